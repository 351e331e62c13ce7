"""The projector from image-encoder features to the backbone width (LLaVA's).

``positions=True`` adds one learned vector per image token (row-major grid cell), as a ViT's position
embedding does: RoPE tells the decoder how far apart two tokens are, not where a token's content lies, so
"where is the cyan square?" must be read from the attended token itself.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anytoken.models.formats import check_choice

# Init of the position embedding: about a projected feature's scale (0.45 on the quickstart captioner).
# VQA grown from that captioner, seeds 0-2: held-out 0.92 / 0.93 / 0.89 at 0.4, 0.82 / 0.86 / 0.82 at 0.1.
POSITIONS_STD = 0.4


class TokenPositions(nn.Module):
    """Adds a learned vector per token position: ``[B, N, d] -> [B, N, d]``."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(1, num_tokens, dim) * POSITIONS_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.embedding.shape[-2:]:
            n, d = self.embedding.shape[1:]
            raise ValueError(f"expected image tokens [B, {n}, {d}], got {tuple(x.shape)}")
        return x + self.embedding


def build_projector(kind: Literal["linear", "mlp"], d_in: int, d_model: int, num_tokens: int,
                    positions: bool = False) -> nn.Module:
    """``"linear"`` or ``"mlp"`` (Linear-GELU-Linear) from ``d_in`` to ``d_model``, then (``positions``)
    a ``TokenPositions`` over the ``num_tokens`` image tokens."""
    check_choice("projector", kind, ("linear", "mlp"))
    layers = [nn.Linear(d_in, d_model)]
    if kind == "mlp":
        layers += [nn.GELU(), nn.Linear(d_model, d_model)]
    if positions:
        layers.append(TokenPositions(num_tokens, d_model))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
