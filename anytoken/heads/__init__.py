"""Decoding heads: the LM head, task heads, and constrained generation on the KV cache."""

from anytoken.heads.classify import ClassifyHead
from anytoken.heads.codebooks import CodebookHeads, delay_pattern, generate_delayed, undo_delay
from anytoken.heads.decoding import DecodingConfig, GrammarConstraint, VocabularyConstraint, generate
from anytoken.heads.fourier import FourierHead
from anytoken.heads.lm import LMHead

__all__ = [
    "ClassifyHead", "CodebookHeads", "DecodingConfig", "FourierHead", "GrammarConstraint", "LMHead",
    "VocabularyConstraint", "delay_pattern", "generate", "generate_delayed", "undo_delay",
]
