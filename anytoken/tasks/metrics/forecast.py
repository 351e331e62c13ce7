"""Trajectory forecasting metrics: ADE/FDE, minADE/minFDE over k samples, and the constant-velocity baseline.

ADE is the mean Euclidean distance between predicted and true positions over the forecast steps, FDE the
distance at the last step. The constant-velocity (CV) baseline extrapolates the last observed step; its
own k futures (``perturbed_velocity``) turn and scale that step at random, so best-of-k compares like for
like with a model's k samples. Over ``k`` sampled futures, minADE/minFDE take per agent the best sample
(marginal, as the ETH/UCY and Argoverse benchmarks do); the joint variants take per scene the one sample
whose mean over agents is best (a joint forecast must be right for all agents at once).
"""

from __future__ import annotations

import torch


def _check(pred: torch.Tensor, gt: torch.Tensor, sampled: bool) -> None:
    if gt.dim() < 2 or gt.shape[-1] != 2 or gt.shape[-2] < 1:
        raise ValueError(f"ground truth must be [..., F, 2] with F >= 1, got {tuple(gt.shape)}")
    expected = gt.shape[:1] + (pred.shape[1],) + gt.shape[1:] if sampled else gt.shape
    if pred.shape != expected:
        raise ValueError(f"predictions {tuple(pred.shape)} do not match ground truth {tuple(gt.shape)}"
                         f"{' with a sample dimension after the batch' if sampled else ''}")
    if not (torch.isfinite(pred).all() and torch.isfinite(gt).all()):
        raise ValueError("predictions and ground truth must be finite")


def displacement_errors(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-trajectory ``(ade, fde)``, each ``[...]``, of predicted positions ``pred`` ``[..., F, 2]`` against
    the true ones ``gt`` ``[..., F, 2]``."""
    _check(pred, gt, sampled=False)
    dist = (pred - gt).norm(dim=-1)  # (..., F)
    return dist.mean(-1), dist[..., -1]


def sample_errors(samples: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Best-of-k errors of ``samples`` ``[B, k, A, F, 2]`` (k sampled joint futures of A agents) against
    ``gt`` ``[B, A, F, 2]``: ``min_ade``/``min_fde`` ``[B, A]`` (best sample per agent) and
    ``joint_min_ade``/``joint_min_fde`` ``[B]`` (best sample per scene, by mean over agents)."""
    _check(samples, gt, sampled=True)
    ade, fde = displacement_errors(samples, gt[:, None].expand_as(samples))  # (B, k, A) each
    return {"min_ade": ade.min(1).values, "min_fde": fde.min(1).values,
            "joint_min_ade": ade.mean(-1).min(1).values, "joint_min_fde": fde.mean(-1).min(1).values}


def constant_velocity(history: torch.Tensor, horizon: int) -> torch.Tensor:
    """Extrapolate the last observed step: ``[..., H, 2]`` (H >= 2) -> ``[..., horizon, 2]``."""
    if history.dim() < 2 or history.shape[-1] != 2 or history.shape[-2] < 2:
        raise ValueError(f"the constant-velocity baseline needs histories [..., H >= 2, 2], "
                         f"got {tuple(history.shape)}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    last, velocity = history[..., -1:, :], history[..., -1:, :] - history[..., -2:-1, :]  # (..., 1, 2)
    steps = torch.arange(1, horizon + 1, dtype=history.dtype, device=history.device)[:, None]  # (F, 1)
    return last + steps * velocity  # (..., F, 2)


def perturbed_velocity(history: torch.Tensor, horizon: int, k: int, turn: float = 0.2, scale: float = 0.2,
                       seed: int = 0) -> torch.Tensor:
    """k constant-velocity futures ``[B, k, ..., horizon, 2]`` of histories ``[B, ..., H, 2]``: the first is
    plain CV, the others rotate the last observed step by ``N(0, turn)`` radians and scale it by
    ``1 + N(0, scale)`` (drawn per future and trajectory from ``seed``) before extrapolating it."""
    plain = constant_velocity(history, horizon)  # (B, ..., F, 2)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    last = history[..., -1:, :]  # (B, ..., 1, 2)
    step = (plain[..., :1, :] - last)[:, None]  # (B, 1, ..., 1, 2)
    g = torch.Generator().manual_seed(seed)
    shape = (history.shape[0], k - 1, *history.shape[1:-2], 1, 1)
    angle = torch.randn(shape, generator=g, dtype=history.dtype) * turn
    factor = 1 + torch.randn(shape, generator=g, dtype=history.dtype) * scale
    cos, sin = angle.cos(), angle.sin()
    x, y = step[..., :1], step[..., 1:]
    turned = torch.cat([cos * x - sin * y, sin * x + cos * y], dim=-1) * factor  # (B, k-1, ..., 1, 2)
    steps = torch.arange(1, horizon + 1, dtype=history.dtype)[:, None]  # (F, 1)
    others = last[:, None] + steps * turned  # (B, k-1, ..., F, 2)
    return torch.cat([plain[:, None], others], dim=1)
