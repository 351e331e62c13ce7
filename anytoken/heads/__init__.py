"""Decoding heads: the LM head, task heads, and constrained generation on the KV cache."""

from anytoken.heads.decoding import (
    DecodingConfig,
    GrammarConstraint,
    VocabularyConstraint,
    generate,
)
from anytoken.heads.lm import LMHead

__all__ = ["DecodingConfig", "GrammarConstraint", "LMHead", "VocabularyConstraint", "generate"]
