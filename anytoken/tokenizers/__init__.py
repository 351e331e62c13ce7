"""Modality tokenizers, the shared TokenSpace and the sequence builder (no backbone, no Lightning)."""

from anytoken.tokenizers.base import (
    SegmentGrammar,
    Tokenizer,
    create_tokenizer,
    register_tokenizer,
    tokenizer_class,
    tokenizer_from_spec,
)
from anytoken.tokenizers.sequence import Embeds, SequenceBatch, Special, Tokens, build_sequences
from anytoken.tokenizers.space import TokenSpace
from anytoken.tokenizers.text import BPETokenizer, CLIPBPETokenizer

__all__ = [
    "BPETokenizer",
    "CLIPBPETokenizer",
    "Embeds",
    "SegmentGrammar",
    "SequenceBatch",
    "Special",
    "TokenSpace",
    "Tokenizer",
    "Tokens",
    "build_sequences",
    "create_tokenizer",
    "register_tokenizer",
    "tokenizer_class",
    "tokenizer_from_spec",
]
