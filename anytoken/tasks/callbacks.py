"""Callbacks the shipped configs use."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from anytoken.models.formats import check_choice
from anytoken.tasks.module import TokenTaskModule


class ExportRelease(L.Callback):
    """At the end of ``fit``, write the trained model as a release directory (config JSON + safetensors).

    Args:
        dirpath: where the release goes (replaced atomically).
    """

    module_type: ClassVar[type[L.LightningModule]] = TokenTaskModule  # what it exports, by its ``export``
    written: ClassVar[str] = "release"

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, self.module_type):
            raise TypeError(f"{type(self).__name__} needs a {self.module_type.__name__}, "
                            f"got {type(pl_module).__name__}")
        pl_module.export(self.dirpath)
        rank_zero_info(f"{self.written} written to {self.dirpath}")


class RestoreBest(L.Callback):
    """Early stopping by restoring: keep a copy of the weights at the best validation ``monitor`` value and
    load them back when training ends, before an ``ExportRelease`` listed after it writes the release
    (Keras' ``restore_best_weights``). ``last.ckpt`` still holds the last step's weights.

    Args:
        monitor: the logged metric to watch (e.g. ``val/loss``).
        mode: ``"min"`` or ``"max"``: which direction is better.
    """

    def __init__(self, monitor: str = "val/loss", mode: Literal["min", "max"] = "min") -> None:
        check_choice("mode", mode, ("min", "max"))
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_step: int | None = None
        self._weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            raise KeyError(f"RestoreBest: {self.monitor!r} was not logged; logged: "
                           f"{sorted(trainer.callback_metrics)}")
        value = float(trainer.callback_metrics[self.monitor])
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.best_step = value, trainer.global_step
            self._weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._weights is not None:
            pl_module.load_state_dict(self._weights)
            rank_zero_info(f"restored the weights of step {self.best_step} ({self.monitor} {self.best:.4f})")
