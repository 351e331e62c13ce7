"""A classification head: hidden states -> one set of class logits per sequence, for tasks whose answer is
one of a fixed set of classes (VQA over the most frequent answers, a table row's label)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

Pooling = Literal["last", "mean"]


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: Pooling = "last") -> torch.Tensor:
    """One vector per sequence.

    Args:
        hidden: ``[B, T, d]`` hidden states.
        mask: bool ``[B, T]``, True where a position belongs to the sequence (any padding side);
            None means every position does.
        pooling: ``"last"`` (the last True position: a causal model has read everything there) or
            ``"mean"`` (the mean over True positions).

    Returns:
        ``[B, d]``.
    """
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, d], got shape {tuple(hidden.shape)}")
    B, T, _ = hidden.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=hidden.device)
    if mask.shape != (B, T):
        raise ValueError(f"mask {tuple(mask.shape)} must be [B, T] = {(B, T)}")
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every row of mask needs at least one True position")
    if pooling == "last":
        idx = torch.arange(T, device=hidden.device).expand(B, T)  # (B, T)
        last = torch.where(mask, idx, -1).amax(dim=1)  # (B,)
        return hidden[torch.arange(B, device=hidden.device), last]  # (B, d)
    if pooling == "mean":
        w = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
        return (hidden * w).sum(dim=1) / w.sum(dim=1)  # (B, d)
    raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")


class ClassifyHead(nn.Module):
    """Pool the sequence, then LayerNorm -> Linear -> GELU -> Linear to ``num_classes`` logits.

    Args:
        d_model: width of the hidden states.
        num_classes: number of classes (at least 2).
        pooling: ``"last"`` or ``"mean"`` (see ``pool``).
        hidden: width of the MLP's hidden layer; None = ``2 * d_model``.
        dropout: dropout on the pooled vector while training.
    """

    def __init__(
        self, d_model: int, num_classes: int, pooling: Pooling = "last", hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classification head needs at least 2 classes, got {num_classes}")
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        hidden = hidden or 2 * d_model
        self.pooling: Pooling = pooling
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, hidden), nn.GELU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, num_classes]`` from hidden states ``[B, T, d]`` and a validity mask ``[B, T]``."""
        return self.mlp(pool(hidden, mask, self.pooling))  # (B, C)
