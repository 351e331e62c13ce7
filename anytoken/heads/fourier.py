"""The Fourier head (Gillman et al. 2024, "Fourier Head"): logits over ordered bins from a learned density.

For each ordered range of ids (pose coordinate bins, motion action bins) the head predicts the ``N + 1``
complex coefficients ``c_j`` of the density on ``[-1, 1]``

    p(x) = |sum_j c_j exp(i pi j x)|^2 / (2 a_0) = 1/2 + Re sum_{k=1..N} (a_k / a_0) exp(i pi k x),

``a_k = sum_j c_{j+k} conj(c_j)`` (non-negative by construction, integrating to 1), evaluated at the bin
centres: neighbouring bins get similar probabilities and ``N`` caps the sharpness. The optional penalty
``gamma * sum_k 2 pi^2 k^2 |a_k / a_0|^2`` is the paper's regulariser on normalised coefficients (so
shrinking ``c`` cannot meet it). Ids outside the ranges keep the base head's logits, and each range keeps
the base head's total probability: only the split of that mass among the bins changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from anytoken.tokenizers.base import Interval
from anytoken.tokenizers.space import TokenSpace


class FourierHead(nn.Module):
    """A base head whose logits inside each ordered range come from a Fourier density.

    Args:
        base: the head giving logits ``[..., V]`` over the whole TokenSpace (e.g. ``LMHead``).
        d_model: width of the hidden states.
        ranges: global ``[lo, hi)`` id ranges whose ids are ordered bins (each gets its own density).
        num_frequencies: N, the number of Fourier frequencies (sharpness limit: about ``2 / N`` of the range).
        gamma: weight of the smoothness penalty.
        eps: added to the bin probabilities before the log, so no bin is impossible.
    """

    def __init__(
        self, base: nn.Module, d_model: int, ranges: Sequence[Interval], num_frequencies: int = 16,
        gamma: float = 0.0, eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.ranges = [(int(lo), int(hi)) for lo, hi in ranges]
        if not self.ranges or any(hi - lo < 2 for lo, hi in self.ranges):
            raise ValueError(f"FourierHead needs at least one range of >= 2 ordered ids, got {self.ranges}")
        spans = sorted(self.ranges)
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise ValueError(f"FourierHead ranges must not overlap, got {self.ranges}")
        if num_frequencies < 1 or gamma < 0 or eps <= 0:
            raise ValueError(
                f"need num_frequencies >= 1, gamma >= 0, eps > 0; got {num_frequencies}, {gamma}, {eps}"
            )
        self.base, self.num_frequencies, self.gamma, self.eps = base, num_frequencies, gamma, eps
        # one linear map per range: hidden -> real and imaginary parts of c_0 .. c_N
        self.coefficients = nn.ModuleList(nn.Linear(d_model, 2 * (num_frequencies + 1)) for _ in self.ranges)
        k = torch.arange(1, num_frequencies + 1, dtype=torch.float64)
        self.register_buffer("k_squared", (2 * math.pi**2 * k**2).float(), persistent=False)
        for r, (lo, hi) in enumerate(self.ranges):
            centres = (torch.arange(hi - lo, dtype=torch.float64) + 0.5) / (hi - lo) * 2 - 1  # in [-1, 1]
            angle = math.pi * k[:, None] * centres[None, :]  # (N, m)
            self.register_buffer(f"cos_{r}", angle.cos().float(), persistent=False)
            self.register_buffer(f"sin_{r}", angle.sin().float(), persistent=False)

    @classmethod
    def for_modality(
        cls, base: nn.Module, d_model: int, space: TokenSpace, modality: str, intervals: Sequence[Interval],
        **kwargs: float,
    ) -> FourierHead:
        """A Fourier head over ``intervals`` of ``modality``'s local ids (``tokenizer.bin_intervals``)."""
        r = space.range(modality)
        for lo, hi in intervals:
            if not 0 <= lo < hi <= len(r):
                raise ValueError(f"interval [{lo}, {hi}) is outside {modality}'s {len(r)} local ids")
        return cls(base, d_model, [(r.start + lo, r.start + hi) for lo, hi in intervals], **kwargs)

    def _normalised_autocorrelation(self, r: int, hidden: torch.Tensor) -> torch.Tensor:
        """``a_k / a_0`` for k = 1..N, complex ``[..., N]``."""
        re, im = self.coefficients[r](hidden.float()).float().chunk(2, dim=-1)  # (..., N+1) each
        c, N = torch.complex(re, im), self.num_frequencies
        a = torch.stack([(c[..., k:] * c[..., : N + 1 - k].conj()).sum(-1) for k in range(N + 1)], dim=-1)
        return a[..., 1:] / (a[..., :1].real + 1e-8)  # a_0 = sum_j |c_j|^2 is real

    def bin_log_probs(self, r: int, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[..., m]`` of the bins of range ``r`` (they sum to 1 up to ``eps``)."""
        a = self._normalised_autocorrelation(r, hidden)
        density = 0.5 + a.real @ getattr(self, f"cos_{r}") - a.imag @ getattr(self, f"sin_{r}")  # (..., m)
        density = density.clamp(min=0)  # >= 0 in exact arithmetic; rounding can dip below
        probs = density / density.sum(-1, keepdim=True).clamp(min=1e-12)
        return torch.log(probs + self.eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., V]`` from hidden states ``[..., d_model]``."""
        logits = self.base(hidden).float()  # (..., V)
        out = logits.clone()
        for r, (lo, hi) in enumerate(self.ranges):
            mass = logits[..., lo:hi].logsumexp(-1, keepdim=True)  # (..., 1) log of the range's total weight
            out[..., lo:hi] = mass + self.bin_log_probs(r, hidden)
        return out

    def penalty(self, hidden: torch.Tensor) -> torch.Tensor:
        """The smoothness penalty (a scalar): ``gamma`` times the mean over rows and ranges."""
        if self.gamma == 0 or hidden.numel() == 0:
            return hidden.new_zeros(())
        total = hidden.new_zeros((), dtype=torch.float32)
        for r in range(len(self.ranges)):
            a = self._normalised_autocorrelation(r, hidden)
            total = total + ((a.real.square() + a.imag.square()) * self.k_squared).sum(-1).mean()
        return self.gamma * total / len(self.ranges)
