"""Joint multi-agent trajectory forecasting (MotionLM-style):
``<bos> <trajectory> history </trajectory> <forecast> <trajectory> future </trajectory>``.

Motion tokens are time-major, agents inner, so each agent's next action is predicted knowing every agent's
past and the other agents' actions at the same step. The history is encoded from rest at the agents' first
positions. The future continues that closed loop (``vocab["forecast_start"] == "window"``) or starts afresh
from the observed state, the last observed position and step (``"observed"``): with acceleration actions a
zero action then continues at constant velocity, so the model learns corrections to that baseline.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, check_choice, register_format
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
        mean_futures: sampled futures averaged into the expected forecast (``expected``; evaluation: the
            ``mean_ade``/``mean_fde`` metrics), a point estimate beside the greedy one.
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
        mean_futures: int = 16,
    ) -> None:
        super().__init__()
        if num_futures < 1 or mean_futures < 1:
            raise ValueError(f"num_futures and mean_futures must be >= 1, got {num_futures}, {mean_futures}")
        self.head, self.fourier_frequencies, self.fourier_gamma = head, fourier_frequencies, fourier_gamma
        self.num_futures, self.mean_futures = num_futures, mean_futures
        sampling = DecodingConfig(**sampling) if isinstance(sampling, dict) else sampling
        self.sampling = sampling or DecodingConfig(strategy="sample")

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        self.start = model.vocab.get("forecast_start", "window")
        check_choice("vocab['forecast_start']", self.start, ("window", "observed"))
        model.use_head(self.head, "trajectory", num_frequencies=self.fourier_frequencies,
                       gamma=self.fourier_gamma)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = [[Special("<bos>"), Tokens("trajectory", history, prefix=True), Special("<forecast>")]
                   for history in batch["history_ids"]]
        return self.with_targets(prompts, "trajectory", batch["future_ids"] if targets else None)

    @torch.no_grad()
    def forecast(self, model: AnytokenModel, history_ids: torch.Tensor, observed: torch.Tensor, horizon: int,
                 num_futures: int = 1, decoding: DecodingConfig | None = None) -> torch.Tensor:
        """Future positions ``[B, k, A, horizon, 2]`` of every agent.

        Args:
            history_ids: ``[B, 2A(H-1)]`` history tokens (encoded from rest at the first observed positions).
            observed: ``[B, A, H, 2]`` the observed positions (a model whose future continues the window
                also takes just the first ones, ``[B, A, 2]``).
            horizon: F, steps to forecast.
            num_futures: k futures per scene (use a sampling ``decoding`` for k > 1).
            decoding: default this task's.
        """
        position, velocity = self.future_state(observed)  # (B, A, 2) each
        B, A = position.shape[:2]
        decoding = self.budget(model, decoding, 2 * A * horizon)
        history = history_ids.repeat_interleave(num_futures, dim=0)  # (B*k, Lh)
        grammar = model.tokenizers["trajectory"].grammar(A, horizon)
        ids = torch.stack(model.generate(self, {"history_ids": history.to(model.device)}, "trajectory",
                                         decoding, grammar)).cpu()  # (B*k, 2AF)
        if self.start == "window":
            ids = torch.cat([history.cpu(), ids], dim=1)  # (B*k, Lh + 2AF): decoded from the first positions
        paths = self.decode_scenes(model, ids, position.repeat_interleave(num_futures, dim=0),
                                   velocity.repeat_interleave(num_futures, dim=0))
        return paths[:, :, -horizon:].reshape(B, num_futures, A, horizon, 2)

    def expected(self, model: AnytokenModel, history_ids: torch.Tensor, observed: torch.Tensor,
                 horizon: int) -> torch.Tensor:
        """The expected future ``[B, A, horizon, 2]``: the mean of ``mean_futures`` futures sampled with
        ``sampling`` (a point estimate that, unlike greedy decoding, hedges between likely futures)."""
        return self.forecast(model, history_ids, observed, horizon, self.mean_futures, self.sampling).mean(1)

    def future_state(self, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where decoding starts, position and velocity ``[B, A, 2]``: at rest at the first positions
        (``"window"``: the history tokens come first) or the last observed position and step
        (``"observed"``)."""
        observed = torch.as_tensor(observed).cpu().double()
        if observed.dim() == 4 and self.start == "observed" and observed.shape[2] >= 2:
            return observed[:, :, -1], observed[:, :, -1] - observed[:, :, -2]
        if self.start == "observed":
            raise ValueError(f"this model forecasts from the observed state: give the observed positions "
                             f"[B, A, H >= 2, 2], got shape {tuple(observed.shape)}")
        first = observed[:, :, 0] if observed.dim() == 4 else observed
        if first.dim() != 3 or first.shape[-1] != 2:
            raise ValueError(f"observed must be [B, A, H, 2] or the first positions [B, A, 2], "
                             f"got shape {tuple(observed.shape)}")
        return first, torch.zeros_like(first)

    def decode_scenes(self, model: AnytokenModel, ids: torch.Tensor, position: torch.Tensor,
                      velocity: torch.Tensor | None = None) -> torch.Tensor:
        """Paths ``[N, A, S+1, 2]`` of motion ids ``[N, 2AS]`` from ``position`` and ``velocity``
        ``[N, A, 2]`` (default: at rest)."""
        N, A = position.shape[:2]
        velocity = torch.zeros_like(position) if velocity is None else velocity
        steps = ids.view(N, -1, A, 2).transpose(0, 1).reshape(-1)  # all scenes' agents side by side
        state = MotionState(position.reshape(N * A, 2).double(), velocity.reshape(N * A, 2).double())
        return model.tokenizers["trajectory"].decode(steps, state).view(N, A, -1, 2)  # (N, A, S+1, 2)
