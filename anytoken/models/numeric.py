"""Order-aware input encodings of numbers (Gorishniy et al. 2022, "On Embeddings for Numerical Features in
Tabular Deep Learning"): piecewise-linear encoding (PLE) of a value over fixed bin edges, mapped to the
backbone width by one linear map per column.

For edges ``e_0 < e_1 < ... < e_T`` the encoding of ``x`` has ``T`` components; component ``t`` is 0 below
``e_t``, 1 above ``e_{t+1}`` and rises linearly in between (the first and last are left open, so values
beyond the fitted range keep growing). Neighbouring values get neighbouring encodings, so what a column
learns about one value carries over to the values next to it, which a bin token's embedding (learnt alone
for each bin) cannot do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


def piecewise_linear(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """PLE ``[..., T]`` of ``values`` ``[...]`` over increasing ``edges`` ``[T + 1]``; NaN (missing): 0."""
    lo, width = edges[:-1], edges[1:] - edges[:-1]  # (T,) each
    ratio = (values[..., None] - lo) / torch.where(width > 0, width, 1.0)  # (..., T)
    if ratio.shape[-1] == 1:
        return torch.nan_to_num(ratio, nan=0.0)  # one bin: open at both ends
    first = ratio[..., :1].clamp(max=1.0)  # keeps falling below the first edge
    last = ratio[..., -1:].clamp(min=0.0)  # keeps rising above the last edge
    return torch.nan_to_num(torch.cat([first, ratio[..., 1:-1].clamp(0.0, 1.0), last], dim=-1), nan=0.0)


class NumericEncoder(nn.Module):
    """One PLE + linear map per numeric column: values -> additive input embeddings ``[..., d_model]``.

    The maps start at zero, so an untrained encoder adds nothing (the model starts as the bin-token model).

    Args:
        edges: per column its increasing bin edges (at least 2).
        d_model: the backbone width.
        bias: give each column's map a bias (the column's own embedding where the encoding replaces the
            bin token's rather than adding to it).
    """

    def __init__(self, edges: Sequence[Sequence[float]], d_model: int, bias: bool = False) -> None:
        super().__init__()
        if any(len(e) < 2 for e in edges):
            raise ValueError("NumericEncoder needs at least 2 edges per column")
        for i, e in enumerate(edges):
            self.register_buffer(f"edges_{i}", torch.tensor(e, dtype=torch.float32), persistent=False)
        self.maps = nn.ModuleList(nn.Linear(len(e) - 1, d_model, bias=bias) for e in edges)
        if not bias:  # added to the bin token's embedding: start as the bin-token model
            for linear in self.maps:
                nn.init.zeros_(linear.weight)

    def forward(self, column: int, values: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[N, d_model]`` of column ``column``'s ``values`` ``[N]`` (NaN: zeros)."""
        edges = getattr(self, f"edges_{column}")
        return self.maps[column](piecewise_linear(values.to(edges), edges))  # (N, d)
