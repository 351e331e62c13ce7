"""Train a tiny task module on one batch: the "loss goes down" check many task tests share."""

from __future__ import annotations

from typing import Any

import torch


def train_steps(model: Any, batch: dict[str, Any], steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """``steps`` AdamW steps on ``model.loss(batch)``; the loss before the first and before the last step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]
