"""Training loss curves of tiny task modules from seed 0, and exact batch equality: what the token-shard
and corpus-format tests compare on-the-fly data with shards by."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from anytoken.backbone import TransformerConfig


class Losses(L.Callback):
    """Records each training step's loss."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.values.append(float(outputs["loss"]))


def train_losses(data: L.LightningDataModule, module_type: type, steps: int = 3, max_seq_len: int = 64,
                 **kw: Any) -> list[float]:
    """Training losses of ``steps`` steps of a tiny ``module_type`` from seed 0 (initial weights included)."""
    L.seed_everything(0, verbose=False)
    module = module_type(data.vocab, backbone=TransformerConfig.from_name("tiny", max_seq_len=max_seq_len),
                         warmup_steps=1, **kw)
    losses = Losses()
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[losses])
    trainer.fit(module, data)
    return losses.values


def same(x: Any, y: Any) -> bool:
    """Equal batches: tensors element for element, containers item for item, other values by ``==``."""
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(same(i, j) for i, j in zip(x, y))
    if torch.is_tensor(x):
        return torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y)
    return x.equals(y) if hasattr(x, "equals") else x == y
