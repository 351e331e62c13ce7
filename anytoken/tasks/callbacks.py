"""Callbacks the shipped configs use."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

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
