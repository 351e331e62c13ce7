"""Trajectory forecasting (``anytoken.models.forecasting.ForecastFormat``): training and its metrics."""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.models import AnytokenModel
from anytoken.tasks.data.synthetic.motion import KINDS
from anytoken.tasks.evaluation import Evaluation, per_sample, register_evaluation
from anytoken.tasks.metrics.forecast import (
    constant_velocity,
    displacement_errors,
    perturbed_velocity,
    sample_errors,
)
from anytoken.tasks.module import TokenTaskModule


class ForecastingModule(TokenTaskModule):
    """Forecast all agents of a scene from their history (batches from ``ForecastDataModule``). Arguments:
    ``ForecastFormat``'s settings, then ``TokenTaskModule``'s (``decoding`` is the single-future decoding)."""

    def __init__(
        self,
        *args: Any,
        head: Literal["lm", "fourier"] = "lm",
        fourier_frequencies: int = 16,
        fourier_gamma: float = 0.0,
        num_futures: int = 6,
        sampling: DecodingConfig | None = None,
        mean_futures: int = 16,
        **kwargs: Any,
    ) -> None:
        forecast = {"kind": "forecast", "head": head, "fourier_frequencies": fourier_frequencies,
                    "fourier_gamma": fourier_gamma, "num_futures": num_futures, "sampling": sampling,
                    "mean_futures": mean_futures}
        super().__init__(*args, formats={"forecast": forecast}, **kwargs)


@register_evaluation
class ForecastEvaluation(Evaluation):
    """Per-agent errors: greedy ``ade``/``fde``, the expected forecast's ``mean_ade``/``mean_fde`` (the mean
    of ``mean_futures`` samples), best-of-k ``min_ade``/``min_fde`` (and per scene ``joint_min_*``), the
    constant-velocity ``cv_ade``/``cv_fde`` and its best of k perturbed futures ``cv_min_ade``/``cv_min_fde``;
    means overall and per agent kind."""

    kind = "forecast"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per scene: each error ``[A]`` (``joint_*``: a scalar) and the agents' ``kinds`` ``[A]``."""
        positions, H = batch["positions"].cpu(), int(batch["history"])
        F, k = positions.shape[2] - H, self.fmt.num_futures
        gt, observed = positions[:, :, H:], positions[:, :, :H]  # (B, A, F, 2), (B, A, H, 2)
        greedy = self.fmt.forecast(model, batch["history_ids"], observed, F)[:, 0]  # (B, A, F, 2)
        sampled = self.fmt.forecast(model, batch["history_ids"], observed, F, max(k, self.fmt.mean_futures),
                                    self.fmt.sampling)  # (B, max(k, m), A, F, 2)
        expected = sampled[:, : self.fmt.mean_futures].mean(1)  # (B, A, F, 2)
        ade, fde = displacement_errors(greedy, gt)
        mean_ade, mean_fde = displacement_errors(expected, gt)
        cv_ade, cv_fde = displacement_errors(constant_velocity(observed, F), gt)
        cv = sample_errors(perturbed_velocity(observed, F, k), gt)
        scores = {"ade": ade, "fde": fde, "mean_ade": mean_ade, "mean_fde": mean_fde, "cv_ade": cv_ade,
                  "cv_fde": cv_fde, "cv_min_ade": cv["min_ade"], "cv_min_fde": cv["min_fde"],
                  "kinds": batch["kinds"].cpu()}
        return per_sample(**scores, **sample_errors(sampled[:, :k], gt))

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        cat = {name: torch.stack([o[name] for o in outputs]).double() for name in outputs[0]}
        kinds = cat.pop("kinds").long()  # (N, A)
        metrics = {name: float(v.mean()) for name, v in cat.items()}
        for index, kind in enumerate(KINDS):
            chosen = kinds == index  # (N, A)
            if bool(chosen.any()):
                for name in ("ade", "fde", "mean_ade", "mean_fde", "min_ade", "min_fde", "cv_ade", "cv_fde",
                             "cv_min_ade", "cv_min_fde"):
                    metrics[f"{name}_{kind}"] = float(cat[name][chosen].mean())
        return metrics

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per scene its ``num_futures`` sampled ``futures`` ``[k, A, F, 2]``."""
        positions, H = batch["positions"], int(batch["history"])
        futures = self.fmt.forecast(model, batch["history_ids"], positions[:, :, :H], positions.shape[2] - H,
                                    self.fmt.num_futures, self.fmt.sampling)  # (B, k, A, F, 2)
        return [{"futures": f} for f in futures]
