"""Uniform binning of bounded real values: the quantiser the pose and trajectory tokenizers share.

``[lo, hi]`` is cut into ``num_bins`` equal bins of width ``(hi - lo) / num_bins``; a value maps to the bin
that holds it and back to that bin's centre, so the round trip is off by at most half a bin width for any
value inside ``[lo, hi]``. With an odd number of bins over a symmetric interval, 0 is a bin centre (a
motion token can say "no change" exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


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
        if not (float(self.lo) < float(self.hi)) or not all(map(_finite, (self.lo, self.hi))):
            raise ValueError(f"bins need finite lo < hi, got [{self.lo}, {self.hi}]")

    @property
    def width(self) -> float:
        """Width of one bin; the round-trip error inside ``[lo, hi]`` is at most half of it."""
        return (self.hi - self.lo) / self.num_bins

    def index(
        self, values: torch.Tensor, outside: Literal["error", "clip"] = "error", what: str = "value"
    ) -> torch.Tensor:
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

    def quantize(self, values: torch.Tensor, outside: Literal["error", "clip"] = "error") -> torch.Tensor:
        """``center(index(values))``: the value each input is represented by."""
        values = torch.as_tensor(values)
        dtype = values.dtype if values.is_floating_point() else torch.float32
        return self.center(self.index(values, outside), dtype)


def check_finite(values: torch.Tensor, what: str) -> None:
    """Raise ``ValueError`` when ``values`` holds NaN or infinity, naming ``what`` and the first bad index."""
    values = torch.as_tensor(values)
    if values.is_floating_point():
        bad = ~torch.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{what} must be finite, got {values[first].item()} at index {first}")


def _finite(value: float) -> bool:
    return bool(torch.isfinite(torch.tensor(float(value))))
