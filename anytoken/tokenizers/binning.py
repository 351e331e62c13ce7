"""Uniform binning of bounded real values, the quantiser the pose and trajectory tokenizers share.

A value maps to the bin that holds it and back to that bin's centre, so the round trip is off by at most
half a bin width inside ``[lo, hi]``. With an odd number of bins over a symmetric interval, 0 is a bin
centre (a motion token can say "no change" exactly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from anytoken.tokenizers.base import Interval

Outside = Literal["error", "clip"]


@dataclass(frozen=True)
class UniformBins:
    """``num_bins`` equal bins over ``[lo, hi]``.

    Example:
        >>> bins = UniformBins(0.0, 1.0, 10)
        >>> bins.index(torch.tensor([0.0, 0.55, 1.0]))  # tensor([0, 5, 9])
        >>> bins.center(torch.tensor([5]))  # tensor([0.55])
    """

    lo: float  # lower edge of the first bin
    hi: float  # upper edge of the last bin
    num_bins: int  # number of bins

    def __post_init__(self) -> None:
        if not isinstance(self.num_bins, int) or self.num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {self.num_bins!r}")
        if not (float(self.lo) < float(self.hi)) or not all(map(math.isfinite, (self.lo, self.hi))):
            raise ValueError(f"bins need finite lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def width(self) -> float:
        """Width of one bin; the round-trip error inside ``[lo, hi]`` is at most half of it."""
        return (self.hi - self.lo) / self.num_bins

    def index(self, values: torch.Tensor, outside: Outside = "error", what: str = "value") -> torch.Tensor:
        """Bin index (``torch.long``, same shape) of each value.

        Args:
            values: real values, any shape.
            outside: ``"error"`` raises ``ValueError`` for values outside ``[lo, hi]``; ``"clip"`` maps them
                to the first or last bin.
            what: what the values are, for error messages (e.g. ``"keypoint x"``).
        """
        values = torch.as_tensor(values)
        if not values.is_floating_point():
            values = values.double()
        check_finite(values, what)
        if outside == "error" and values.numel():
            low, high = float(values.min()), float(values.max())
            if low < self.lo or high > self.hi:
                raise ValueError(
                    f"{what} must lie in [{self.lo}, {self.hi}], got values in [{low:.6g}, {high:.6g}]"
                )
        scaled = (values.double() - self.lo) / self.width  # bins in units of one width
        return scaled.floor().clamp(0, self.num_bins - 1).long()

    def center(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Centre of each bin ``index`` (any shape) as ``dtype``."""
        index = torch.as_tensor(index)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_bins):
            raise ValueError(
                f"bin indices must lie in [0, {self.num_bins}), got [{int(index.min())}, {int(index.max())}]"
            )
        return (self.lo + (index.double() + 0.5) * self.width).to(dtype)

    def quantize(self, values: torch.Tensor, outside: Outside = "error") -> torch.Tensor:
        """``center(index(values))``: the value each input is represented by."""
        values = torch.as_tensor(values)
        dtype = values.dtype if values.is_floating_point() else torch.float32
        return self.center(self.index(values, outside), dtype)


@dataclass(frozen=True)
class PlaneBins:
    """2-D points as two local ids each: an x bin in ``[0, nx)``, then a y bin in ``[nx, nx + ny)``."""

    x: UniformBins
    y: UniformBins

    @property
    def intervals(self) -> tuple[Interval, Interval]:
        """Local id intervals of the x bins and of the y bins (ordered bins: where a Fourier head applies)."""
        nx = self.x.num_bins
        return (0, nx), (nx, nx + self.y.num_bins)

    def ids(self, xy: torch.Tensor, outside: Outside = "error", what: str = "value") -> torch.Tensor:
        """Points ``[..., 2]`` -> ids ``[..., 2]`` (x id, y id); ``what`` names them in errors."""
        ix = self.x.index(xy[..., 0], outside, f"x {what}")
        iy = self.y.index(xy[..., 1], outside, f"y {what}")
        return torch.stack([ix, iy + self.x.num_bins], dim=-1)

    def points(self, ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Ids ``[..., 2]`` -> the bin centres ``[..., 2]`` they stand for."""
        x = self.x.center(ids[..., 0], dtype)
        return torch.stack([x, self.y.center(ids[..., 1] - self.x.num_bins, dtype)], dim=-1)


def check_slots(ids: torch.Tensor, intervals: Sequence[Interval], what: str) -> None:
    """Raise ``ValueError`` unless slot ``s`` of ``ids`` ``[..., S]`` lies in ``intervals[s]`` for every s."""
    for s, (lo, hi) in enumerate(intervals):
        col = ids[..., s]
        if bool(((col < lo) | (col >= hi)).any()):
            raise ValueError(f"{what}: slot {s} must lie in [{lo}, {hi}), got {col.flatten()[:8].tolist()}")


def check_finite(values: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` when ``values`` holds NaN or infinity, naming ``what`` and the first bad index."""
    values = torch.as_tensor(values)
    if values.is_floating_point():
        bad = ~torch.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{what} must be finite, got {values[first].item()} at index {first}")

