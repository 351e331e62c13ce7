"""The language-model head: hidden states -> logits over the whole TokenSpace."""

from __future__ import annotations

import torch
import torch.nn as nn

from anytoken.backbone import CausalTransformer


class LMHead(nn.Module):
    """Linear map from the backbone width to the vocabulary, tied to the token embedding if configured.

    Args:
        backbone: the model whose width, vocabulary and (when ``tie_embeddings``) embedding it uses.
    """

    def __init__(self, backbone: CausalTransformer) -> None:
        super().__init__()
        c = backbone.config
        self.proj = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.proj.weight = backbone.embed.weight
        else:
            nn.init.normal_(self.proj.weight, std=0.02)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., vocab_size]`` from hidden states ``[..., d_model]``."""
        return self.proj(hidden)
