"""Joint multi-agent trajectory forecasting (MotionLM-style):
``<bos> <trajectory> history </trajectory> <forecast> <trajectory> future </trajectory>``.

Motion tokens are time-major, agents inner, so each agent's next action is predicted knowing every agent's
past and the other agents' actions at the same step.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, register_format
from anytoken.tokenizers.sequence import Segment, Special, Tokens
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer


@register_format
class ForecastFormat(TaskFormat):
    """Forecast all agents of a scene from their history. Batches: ``history_ids`` ``[B, 2A(H-1)]`` and,
    for training, ``future_ids`` ``[B, 2AF]`` (local motion ids, time-major, agents inner).

    Args:
        head: ``"lm"`` or ``"fourier"`` (Fourier densities over the action bins, ``heads/fourier.py``).
        fourier_frequencies: Fourier head frequencies.
        fourier_gamma: Fourier head smoothness penalty weight.
        num_futures: k, futures sampled per scene for minADE/minFDE (evaluation and prediction).
        sampling: how those futures are sampled (default ``DecodingConfig(strategy="sample")``).
    """

    kind = "forecast"
    tags = ("forecast",)
    tokenizer_types = {"trajectory": TrajectoryTokenizer}
    samples_key = "history_ids"

    def __init__(
        self,
        head: Literal["lm", "fourier"] = "lm",
        fourier_frequencies: int = 16,
        fourier_gamma: float = 0.0,
        num_futures: int = 6,
        sampling: DecodingConfig | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_futures < 1:
            raise ValueError(f"num_futures must be >= 1, got {num_futures}")
        self.head, self.fourier_frequencies, self.fourier_gamma = head, fourier_frequencies, fourier_gamma
        self.num_futures = num_futures
        sampling = DecodingConfig(**sampling) if isinstance(sampling, dict) else sampling
        self.sampling = sampling or DecodingConfig(strategy="sample")

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        model.use_head(self.head, "trajectory", num_frequencies=self.fourier_frequencies,
                       gamma=self.fourier_gamma)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = [[Special("<bos>"), Tokens("trajectory", history, prefix=True), Special("<forecast>")]
                   for history in batch["history_ids"]]
        return self.with_targets(prompts, "trajectory", batch["future_ids"] if targets else None)

    @torch.no_grad()
    def forecast(self, model: AnytokenModel, history_ids: torch.Tensor, start: torch.Tensor, horizon: int,
                 num_futures: int = 1, decoding: DecodingConfig | None = None) -> torch.Tensor:
        """Future positions ``[B, k, A, horizon, 2]`` of every agent.

        Args:
            history_ids: ``[B, 2A(H-1)]`` history tokens (encoded from rest at ``start``).
            start: ``[B, A, 2]`` the agents' first observed positions.
            horizon: F, steps to forecast.
            num_futures: k futures per scene (use a sampling ``decoding`` for k > 1).
            decoding: default this task's.
        """
        B, A = start.shape[:2]
        decoding = self.budget(model, decoding, 2 * A * horizon)
        history = history_ids.repeat_interleave(num_futures, dim=0)  # (B*k, Lh)
        grammar = model.tokenizers["trajectory"].grammar(A, horizon)
        ids = model.generate(self, {"history_ids": history.to(model.device)}, "trajectory", decoding, grammar)
        full = torch.cat([history.cpu(), torch.stack(ids)], dim=1)  # (B*k, Lh + 2AF)
        paths = self.decode_scenes(model, full, start.repeat_interleave(num_futures, dim=0).cpu())
        return paths[:, :, -horizon:].reshape(B, num_futures, A, horizon, 2)

    def decode_scenes(self, model: AnytokenModel, ids: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Paths ``[N, A, S+1, 2]`` of motion ids ``[N, 2AS]``, from rest at ``starts`` ``[N, A, 2]``."""
        N, A = starts.shape[:2]
        steps = ids.view(N, -1, A, 2).transpose(0, 1).reshape(-1)  # all scenes' agents side by side
        state = MotionState.at_rest(starts.reshape(N * A, 2))
        return model.tokenizers["trajectory"].decode(steps, state).view(N, A, -1, 2)  # (N, A, S+1, 2)
