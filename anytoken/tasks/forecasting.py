"""Joint multi-agent trajectory forecasting as token generation (MotionLM-style).

``<bos> <trajectory> history </trajectory> <forecast> <trajectory> future </trajectory>``: the history of
all agents of a scene and their joint future are motion tokens (time-major, agents inner), so each agent's
next action is predicted knowing every agent's past and the other agents' actions at the same step.
Decoding follows the trajectory grammar for ``A`` agents x ``F`` steps x ``(x, y)``; several futures are
sampled per scene (``DecodingConfig(strategy="sample")``) for minADE/minFDE, one greedy future for
ADE/FDE, and the constant-velocity baseline is scored on the same windows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.tasks.data.motion import KINDS
from anytoken.tasks.forecast_metrics import constant_velocity, displacement_errors, sample_errors
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.sequence import Segment, Special, Tokens
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer

EVAL_SPLITS = ("test", "heldout")  # names of the test dataloaders, in order


class ForecastingModule(TokenTaskModule):
    """Forecast all agents of a scene from their history.

    Batches are dicts from ``ForecastDataModule``: ``history_ids`` ``[B, 2A(H-1)]``, ``future_ids``
    ``[B, 2AF]``, ``positions`` ``[B, A, H+F, 2]``, ``kinds`` ``[B, A]``, ``history`` H.

    Args:
        head: ``"lm"`` or ``"fourier"`` (Fourier densities over the action bins, see ``heads/fourier.py``).
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
        super().__init__(*args, **kwargs)
        if "forecast" not in self.space.tasks or not isinstance(
            self.tokenizers.get("trajectory"), TrajectoryTokenizer
        ):
            raise ValueError(
                "ForecastingModule needs a <forecast> task tag and a TrajectoryTokenizer for 'trajectory'"
            )
        self.motion: TrajectoryTokenizer = self.tokenizers["trajectory"]
        self.use_head(head, "trajectory", num_frequencies=fourier_frequencies, gamma=fourier_gamma)
        if num_futures < 1:
            raise ValueError(f"num_futures must be >= 1, got {num_futures}")
        self.num_futures = num_futures
        sampling = DecodingConfig(**sampling) if isinstance(sampling, dict) else sampling
        self.sampling = sampling or DecodingConfig(strategy="sample")
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i, history in enumerate(batch["history_ids"]):
            prompt: list[Segment] = [
                Special("<bos>"),
                Tokens("trajectory", history, prefix=True),
                Special("<forecast>"),
            ]
            if targets:
                out.append(prompt + [Tokens("trajectory", batch["future_ids"][i], target=True)])
            else:
                out.append(prompt + [Tokens("trajectory", torch.empty(0, dtype=torch.long), close=False)])
        return out

    def num_samples(self, batch: dict[str, Any]) -> int:
        return len(batch["history_ids"])

    @torch.no_grad()
    def forecast(
        self,
        history_ids: torch.Tensor,
        start: torch.Tensor,
        horizon: int,
        num_futures: int = 1,
        decoding: DecodingConfig | None = None,
    ) -> torch.Tensor:
        """Future positions ``[B, k, A, horizon, 2]`` of every agent.

        Args:
            history_ids: ``[B, 2A(H-1)]`` history tokens (encoded from rest at ``start``).
            start: ``[B, A, 2]`` the agents' first observed positions.
            horizon: F, steps to forecast.
            num_futures: k futures per scene (use a sampling ``decoding`` for k > 1).
            decoding: how tokens are chosen; default ``self.decoding``.
        """
        B, A = start.shape[:2]
        n = 2 * A * horizon
        decoding = replace(decoding or self.decoding, max_new_tokens=n + 1)
        history = history_ids.repeat_interleave(num_futures, dim=0)  # (B*k, Lh)
        ids = self.generate_segment(
            {"history_ids": history.to(self.device)},
            "trajectory",
            decoding,
            grammar=self.motion.grammar(A, horizon),
        )
        full = torch.cat([history.cpu(), torch.stack(ids)], dim=1)  # (B*k, Lh + n)
        starts = start.repeat_interleave(num_futures, dim=0).cpu()  # (B*k, A, 2)
        paths = self.decode_scenes(full, starts)  # (B*k, A, H+F, 2)
        return paths[:, :, -horizon:].reshape(B, num_futures, A, horizon, 2)

    def decode_scenes(self, ids: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Paths ``[N, A, S+1, 2]`` of N scenes' motion ids ``[N, 2AS]``, each from rest at ``starts``
        ``[N, A, 2]``."""
        N, A = starts.shape[:2]
        steps = (
            ids.view(N, -1, A, 2).transpose(0, 1).reshape(-1)
        )  # all scenes' agents side by side, time-major
        paths = self.motion.decode(steps, MotionState.at_rest(starts.reshape(N * A, 2)))  # (N*A, S+1, 2)
        return paths.view(N, A, -1, 2)

    # --- evaluation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def score_batch(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-agent errors of one batch: greedy ``ade``/``fde``, ``min_ade``/``min_fde`` over the sampled
        futures (and the per-scene ``joint_`` variants), the constant-velocity ``cv_ade``/``cv_fde``, and
        the agents' ``kinds``; each ``[B, A]`` (``joint_*``: ``[B]``)."""
        positions, H = batch["positions"].cpu(), int(batch["history"])
        F = positions.shape[2] - H
        gt, start = positions[:, :, H:], positions[:, :, 0]  # (B, A, F, 2), (B, A, 2)
        greedy = self.forecast(batch["history_ids"], start, F)[:, 0]  # (B, A, F, 2)
        sampled = self.forecast(batch["history_ids"], start, F, self.num_futures, self.sampling)
        ade, fde = displacement_errors(greedy, gt)
        cv_ade, cv_fde = displacement_errors(constant_velocity(positions[:, :, :H], F), gt)
        out = {"ade": ade, "fde": fde, "cv_ade": cv_ade, "cv_fde": cv_fde, "kinds": batch["kinds"].cpu()}
        return out | sample_errors(sampled, gt)

    @staticmethod
    def forecast_metrics(scores: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Means of ``score_batch`` outputs, overall and per agent kind (``ade_turning``, ...)."""
        if not scores:
            return {}
        cat = {k: torch.cat([o[k] for o in scores]).double() for k in scores[0]}
        kinds = cat.pop("kinds").long()
        metrics = {name: float(v.mean()) for name, v in cat.items()}
        for index, kind in enumerate(KINDS):
            chosen = kinds == index  # (N, A)
            if bool(chosen.any()):
                for name in ("ade", "fde", "min_ade", "min_fde", "cv_ade", "cv_fde"):
                    metrics[f"{name}_{kind}"] = float(cat[name][chosen].mean())
        return metrics

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        loss = self.loss(batch)
        self.log(
            f"{stage}/loss",
            loss,
            batch_size=len(batch["history_ids"]),
            add_dataloader_idx=False,
            sync_dist=True,
        )
        self._outputs.setdefault(stage, []).append(self.score_batch(batch))

    def _report(self, stage: str) -> dict[str, float]:
        metrics = self.forecast_metrics(self._outputs.pop(stage, []))
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, add_dataloader_idx=False, rank_zero_only=True)
        return metrics

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report("val")
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(
            batch,
            EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(EVAL_SPLITS) else f"test{dataloader_idx}",
        )

    def on_test_epoch_end(self) -> None:
        lines = [
            "",
            f"{'split':<8} {'ADE':>7} {'FDE':>7} {'minADE':>7} {'minFDE':>7} {'CV ADE':>7} {'CV FDE':>7}",
        ]
        for split in list(self._outputs):
            m = self._report(split)
            lines.append(
                f"{split:<8} {m['ade']:7.3f} {m['fde']:7.3f} {m['min_ade']:7.3f} {m['min_fde']:7.3f} "
                f"{m['cv_ade']:7.3f} {m['cv_fde']:7.3f}"
            )
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """``[B, k, A, F, 2]`` sampled futures."""
        positions, H = batch["positions"], int(batch["history"])
        return self.forecast(
            batch["history_ids"], positions[:, :, 0], positions.shape[2] - H, self.num_futures, self.sampling
        )
