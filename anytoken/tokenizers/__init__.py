"""Modality tokenizers, the shared TokenSpace and the sequence builder (no backbone, no Lightning)."""

from anytoken.tokenizers.audio_codec import AudioCodecTokenizer
from anytoken.tokenizers.base import (
    SegmentGrammar,
    Tokenizer,
    create_tokenizer,
    register_tokenizer,
    tokenizer_from_spec,
)
from anytoken.tokenizers.image_vq import ImageVQTokenizer
from anytoken.tokenizers.mulaw import MuLawTokenizer
from anytoken.tokenizers.pose import PoseTokenizer
from anytoken.tokenizers.pretrained import (  # registers them; transformers is imported when one is built
    ChameleonVQTokenizer,
    DacTokenizer,
    Emu3VQTokenizer,
    EncodecTokenizer,
    MimiTokenizer,
)
from anytoken.tokenizers.sequence import Embeds, SequenceBatch, Special, Tokens, build_sequences
from anytoken.tokenizers.space import TokenSpace
from anytoken.tokenizers.table import TableTokenizer
from anytoken.tokenizers.text import BPETokenizer, CLIPBPETokenizer
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer

__all__ = [
    "AudioCodecTokenizer", "BPETokenizer", "CLIPBPETokenizer", "ChameleonVQTokenizer", "DacTokenizer",
    "Embeds", "Emu3VQTokenizer", "EncodecTokenizer", "ImageVQTokenizer", "MimiTokenizer", "MotionState",
    "MuLawTokenizer", "PoseTokenizer", "SegmentGrammar", "SequenceBatch", "Special", "TableTokenizer",
    "TokenSpace", "Tokenizer", "Tokens", "TrajectoryTokenizer", "build_sequences", "create_tokenizer",
    "register_tokenizer", "tokenizer_from_spec",
]
