"""anytoken: turn any modality into tokens and train one causal transformer over them.

The public API; ``anytoken.tokenizers`` and ``anytoken.backbone`` import without Lightning or Gradio.
"""

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import DecodingConfig, GrammarConstraint, LMHead, generate
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
    "AudioCodecTokenizer",
    "BPETokenizer",
    "CLIPBPETokenizer",
    "CausalTransformer",
    "DecodingConfig",
    "GrammarConstraint",
    "ImageVQTokenizer",
    "LMHead",
    "MuLawTokenizer",
    "SegmentGrammar",
    "TableTokenizer",
    "TokenSpace",
    "Tokenizer",
    "TransformerConfig",
    "__version__",
    "build_sequences",
    "create_tokenizer",
    "generate",
]
