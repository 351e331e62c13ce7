"""anytoken: turn any modality into tokens and train one causal transformer over them.

The public API, none of it importing Lightning or Gradio: ``anytoken.load(path)`` gives the model a task
trained (an ``AnytokenModel``), ready to call.
"""

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.checkpoint import load
from anytoken.heads import DecodingConfig, GrammarConstraint, LMHead, generate
from anytoken.loading import LoadError
from anytoken.models import AnytokenModel, TaskFormat, register_format
from anytoken.tokenizers import (
    AudioCodecTokenizer,
    BPETokenizer,
    CLIPBPETokenizer,
    ImageVQTokenizer,
    MuLawTokenizer,
    SegmentGrammar,
    TableTokenizer,
    Tokenizer,
    TokenSpace,
    build_sequences,
    create_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "AnytokenModel", "LoadError", "TaskFormat", "load", "register_format", "AudioCodecTokenizer",
    "BPETokenizer", "CLIPBPETokenizer", "CausalTransformer", "DecodingConfig", "GrammarConstraint",
    "ImageVQTokenizer", "LMHead", "MuLawTokenizer", "SegmentGrammar", "TableTokenizer", "TokenSpace",
    "Tokenizer", "TransformerConfig", "__version__", "build_sequences", "create_tokenizer", "generate",
]
