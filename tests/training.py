"""Train a tiny task module: on one batch (the "loss goes down" check many task tests share) or for a few
epochs of a DataModule (the learning checks: a tiny model beats its baseline on unseen data)."""

from __future__ import annotations

from typing import Any

import torch


def _step(opt: torch.optim.Optimizer, model: Any, batch: dict[str, Any]) -> float:
    loss = model.loss(batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def train_steps(model: Any, batch: dict[str, Any], steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """``steps`` AdamW steps on ``model.loss(batch)``; the loss before the first and before the last step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = [_step(opt, model, batch) for _ in range(steps)]
    return losses[0], losses[-1]


def train_epochs(model: Any, data: Any, epochs: int, lr: float = 3e-3) -> None:
    """``epochs`` passes of AdamW over ``data.train_dataloader()`` (a fresh loader each epoch)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in data.train_dataloader():
            _step(opt, model, batch)
