"""Trajectory forecasting (``anytoken.models.forecasting.ForecastFormat``): training and its metrics.

Greedy futures give ADE/FDE, ``num_futures`` sampled ones minADE/minFDE, and the constant-velocity
baseline is scored on the same windows.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.models import AnytokenModel
from anytoken.tasks.data.synthetic.motion import KINDS
from anytoken.tasks.evaluation import Evaluation, register_evaluation
from anytoken.tasks.metrics.forecast import constant_velocity, displacement_errors, sample_errors
from anytoken.tasks.module import TokenTaskModule


class ForecastingModule(TokenTaskModule):
    """Forecast all agents of a scene from their history.

    Batches are dicts from ``ForecastDataModule``: ``history_ids`` ``[B, 2A(H-1)]``, ``future_ids``
    ``[B, 2AF]``, ``positions`` ``[B, A, H+F, 2]``, ``kinds`` ``[B, A]``, ``history`` H.

    Args:
        head: ``"lm"`` or ``"fourier"`` (Fourier densities over the action bins).
        fourier_frequencies: Fourier head frequencies.
        fourier_gamma: Fourier head smoothness penalty weight.
        num_futures: k, futures sampled per scene for minADE/minFDE.
        sampling: how futures are sampled (``strategy="sample"``; temperature, top-k/top-p).
        *args, **kwargs: those of ``TokenTaskModule`` (``decoding`` is the single-future decoding).
    """

    def __init__(
        self,
        *args: Any,
        head: Literal["lm", "fourier"] = "lm",
        fourier_frequencies: int = 16,
        fourier_gamma: float = 0.0,
        num_futures: int = 6,
        sampling: DecodingConfig | None = None,
        **kwargs: Any,
    ) -> None:
        forecast = {"kind": "forecast", "head": head, "fourier_frequencies": fourier_frequencies,
                    "fourier_gamma": fourier_gamma, "num_futures": num_futures, "sampling": sampling}
        super().__init__(*args, formats={"forecast": forecast}, **kwargs)


@register_evaluation
class ForecastEvaluation(Evaluation):
    """Per-agent errors: greedy ``ade``/``fde``, best-of-k ``min_ade``/``min_fde`` (and per scene
    ``joint_min_*``), the constant-velocity ``cv_ade``/``cv_fde``; means overall and per agent kind."""

    kind = "forecast"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per scene: each error ``[A]`` (``joint_*``: a scalar) and the agents' ``kinds`` ``[A]``."""
        positions, H = batch["positions"].cpu(), int(batch["history"])
        F = positions.shape[2] - H
        gt, start = positions[:, :, H:], positions[:, :, 0]  # (B, A, F, 2), (B, A, 2)
        greedy = self.fmt.forecast(model, batch["history_ids"], start, F)[:, 0]  # (B, A, F, 2)
        sampled = self.fmt.forecast(model, batch["history_ids"], start, F, self.fmt.num_futures,
                                    self.fmt.sampling)  # (B, k, A, F, 2)
        ade, fde = displacement_errors(greedy, gt)
        cv_ade, cv_fde = displacement_errors(constant_velocity(positions[:, :, :H], F), gt)
        scores = {"ade": ade, "fde": fde, "cv_ade": cv_ade, "cv_fde": cv_fde, "kinds": batch["kinds"].cpu()}
        scores |= sample_errors(sampled, gt)
        return [{name: value[i] for name, value in scores.items()} for i in range(len(gt))]

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        cat = {name: torch.stack([o[name] for o in outputs]).double() for name in outputs[0]}
        kinds = cat.pop("kinds").long()  # (N, A)
        metrics = {name: float(v.mean()) for name, v in cat.items()}
        for index, kind in enumerate(KINDS):
            chosen = kinds == index  # (N, A)
            if bool(chosen.any()):
                for name in ("ade", "fde", "min_ade", "min_fde", "cv_ade", "cv_fde"):
                    metrics[f"{name}_{kind}"] = float(cat[name][chosen].mean())
        return metrics

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per scene its ``num_futures`` sampled ``futures`` ``[k, A, F, 2]``."""
        positions, H = batch["positions"], int(batch["history"])
        futures = self.fmt.forecast(model, batch["history_ids"], positions[:, :, 0], positions.shape[2] - H,
                                    self.fmt.num_futures, self.fmt.sampling)  # (B, k, A, F, 2)
        return [{"futures": f} for f in futures]
