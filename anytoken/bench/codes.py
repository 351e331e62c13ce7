"""What a tokenizer's ids cost and how they use its codebooks, for any tokenizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from anytoken.tokenizers import Tokenizer
from anytoken.tokenizers.quantizers import usage_and_perplexity


def cardinality(tokenizer: Tokenizer) -> int:
    """Values one id of ``encode``'s output takes: a codebook's size (multi-codebook) or ``vocab_size``."""
    return int(getattr(tokenizer, "cardinality", tokenizer.vocab_size))


def bits_per_token(tokenizer: Tokenizer) -> float:
    """Bits one id of ``encode``'s output carries, ``log2(cardinality)``."""
    return math.log2(cardinality(tokenizer))


def code_counts(tokenizer: Tokenizer, ids: Sequence[torch.Tensor]) -> torch.Tensor:
    """Histogram ``[levels, cardinality]`` of ``encode`` outputs: per codebook when they come as
    ``[..., num_codebooks, T]`` codes, else one histogram over the whole vocabulary."""
    size, levels = cardinality(tokenizer), getattr(tokenizer, "num_codebooks", None)
    per_level = levels is not None and all(i.dim() >= 2 and i.shape[-2] == levels for i in ids)
    counts = torch.zeros(levels if per_level else 1, size)
    for chunk in ids:
        flat = chunk.transpose(0, -2).reshape(levels, -1) if per_level else chunk.reshape(1, -1)
        for level, codes in enumerate(flat.cpu()):
            counts[level] += torch.bincount(codes.long(), minlength=size)[:size].float()
    return counts


def usage(tokenizer: Tokenizer, ids: Sequence[torch.Tensor]) -> dict[str, float]:
    """``codebook_usage`` (share of codes used at least once) and ``perplexity`` over ``ids``, averaged over
    codebooks."""
    used, perplexity = usage_and_perplexity(code_counts(tokenizer, ids))
    return {"codebook_usage": float(used), "perplexity": float(perplexity)}
