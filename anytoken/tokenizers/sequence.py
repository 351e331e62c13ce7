"""The sequence builder: segments of several modalities -> one padded or packed batch of global ids.

A sample is a list of segments, e.g. ``[Special("<bos>"), Embeds("image", 16, source=0),
Special("<caption>"), Tokens("text", ids, target=True)]``. Token and embedding segments are wrapped in
their modality's ``<m>``/``</m>`` markers. A target segment's ids and end marker are predicted (the
``targets`` at the previous position); everything else gets ``-100``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import accumulate, chain
from typing import Literal

import torch

from anytoken.tokenizers.space import TokenSpace

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Tokens:
    """Local ids of one modality. ``close=False`` leaves the end marker off (a generation prompt)."""

    modality: str
    ids: torch.Tensor
    target: bool = False
    prefix: bool = False  # under mask="prefix", this segment attends to itself bidirectionally
    close: bool = True


@dataclass(frozen=True)
class Embeds:
    """``length`` placeholder positions filled later with projected features of media ``source``."""

    modality: str
    length: int
    source: int  # index into the batch's media (e.g. the images tensor)
    prefix: bool = True


@dataclass(frozen=True)
class Special:
    """One special token, e.g. ``"<bos>"`` or a task tag ``"<caption>"``."""

    token: str
    target: bool = False


Segment = Tokens | Embeds | Special


@dataclass
class SequenceBatch:
    """A batch of token rows. All tensors are ``[B, T]`` except ``embed_sources`` ``[S]``.

    ``sample_ids`` numbers the samples packed into a row from 1 (0 = padding); ``prefix_blocks`` numbers
    bidirectional blocks (0 = causal); ``embed_mask`` marks placeholder positions, filled in row-major
    order from the media listed in ``embed_sources`` (one entry per ``Embeds`` segment).
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    loss_weights: torch.Tensor
    modality_ids: torch.Tensor
    positions: torch.Tensor
    sample_ids: torch.Tensor
    prefix_blocks: torch.Tensor
    embed_mask: torch.Tensor
    embed_sources: torch.Tensor

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def attention_mask(self) -> torch.Tensor | None:
        """Bool ``[B, 1, T, T]`` (True = may attend), or ``None`` when plain causal attention is exact."""
        packed = bool((self.sample_ids.amax(dim=1) > 1).any())
        left_padded = bool((self.sample_ids[:, 0] == 0).any())
        if not packed and not left_padded and not bool((self.prefix_blocks > 0).any()):
            return None  # right padding only: pads come last and no real token attends to them
        return build_attention_mask(self.sample_ids, self.prefix_blocks)

    @property
    def num_target_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())


def build_attention_mask(sample_ids: torch.Tensor, prefix_blocks: torch.Tensor) -> torch.Tensor:
    """Causal within each sample, bidirectional within each prefix block, nothing across samples.

    Args:
        sample_ids: ``[B, T]`` sample number per position (0 = padding).
        prefix_blocks: ``[B, T]`` bidirectional block number per position (0 = none).

    Returns:
        Bool ``[B, 1, T, T]``; the diagonal is always allowed so no row is empty (pads attend to themselves).
    """
    T = sample_ids.shape[1]
    idx = torch.arange(T, device=sample_ids.device)
    causal = idx[None, :] <= idx[:, None]  # (T, T)
    same = sample_ids[:, :, None] == sample_ids[:, None, :]  # (B, T, T)
    block = (prefix_blocks[:, :, None] == prefix_blocks[:, None, :]) & (prefix_blocks[:, :, None] > 0)
    mask = (same & (causal | block)) | torch.eye(T, dtype=torch.bool, device=sample_ids.device)
    return mask[:, None]  # (B, 1, T, T)


@dataclass
class _Row:
    ids: list[int]
    target: list[bool]
    modality: list[int]
    prefix: list[int]
    embed: list[bool]
    sources: list[int]


def _flatten(sample: Sequence[Segment], space: TokenSpace, prefix_mask: bool) -> _Row:
    row = _Row([], [], [], [], [], [])
    block = 0
    for seg in sample:
        if isinstance(seg, Special):
            _append(row, [space.special(seg.token)], seg.target, 0, 0, False)
            continue
        m = space.modality_index(seg.modality)
        blk = 0
        if seg.prefix and prefix_mask:
            block, blk = block + 1, block + 1
        _append(row, [space.begin(seg.modality)], False, m, blk, False)
        if isinstance(seg, Embeds):
            if seg.length <= 0:
                raise ValueError(
                    f"Embeds segment of {seg.modality} needs a positive length, got {seg.length}"
                )
            _append(row, [space.pad_id] * seg.length, False, m, blk, True)
            row.sources.append(seg.source)
            close, target = True, False
        else:
            ids = torch.as_tensor(seg.ids)
            if ids.dim() != 1:
                raise ValueError(f"{seg.modality} segment ids must be 1-D, got shape {tuple(ids.shape)}")
            _append(row, space.to_global(seg.modality, ids).tolist(), seg.target, m, blk, False)
            close, target = seg.close, seg.target
        if close:
            _append(row, [space.end(seg.modality)], target, m, blk, False)
    return row


def _append(row: _Row, ids: list[int], target: bool, modality: int, block: int, embed: bool) -> None:
    row.ids += ids
    row.target += [target] * len(ids)
    row.modality += [modality] * len(ids)
    row.prefix += [block] * len(ids)
    row.embed += [embed] * len(ids)


def _pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """First-fit decreasing: sample indices per row, each row's total length <= ``max_length``."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def build_sequences(
    samples: Sequence[Sequence[Segment]], space: TokenSpace, *, max_length: int, pack: bool = False,
    mask: Literal["causal", "prefix"] = "causal", loss_weights: Mapping[str, float] | None = None,
    padding_side: Literal["right", "left"] = "right", sample_weights: Sequence[float] | None = None,
) -> SequenceBatch:
    """Turn samples into one batch.

    Args:
        samples: each a list of segments.
        space: the TokenSpace mapping local ids to global ones.
        max_length: the context length; a longer sample raises ``ValueError``.
        pack: put several samples in one row (first-fit), with attention kept within each sample.
        mask: ``"causal"``, or ``"prefix"`` where segments flagged ``prefix`` attend bidirectionally.
        loss_weights: modality name -> weight of its target tokens (default 1.0).
        padding_side: ``"left"`` for generation prompts, so every row ends at the same position.
        sample_weights: per-sample factor on its target tokens' weights (a mixture's per-task weights).
    """
    if not samples:
        raise ValueError("build_sequences needs at least one sample")
    if mask not in ("causal", "prefix"):
        raise ValueError(f"mask must be 'causal' or 'prefix', got {mask!r}")
    if pack and padding_side == "left":
        raise ValueError("packing is for training; left padding is for generation prompts: pick one")
    weights = {name: 1.0 for name in space.modalities} | dict(loss_weights or {})
    factors = [1.0] * len(samples) if sample_weights is None else [float(w) for w in sample_weights]
    if len(factors) != len(samples) or any(w < 0 for w in factors):
        raise ValueError(f"sample_weights needs {len(samples)} values >= 0, got {list(sample_weights)}")
    rows = [_flatten(s, space, mask == "prefix") for s in samples]
    for i, row in enumerate(rows):
        if len(row.ids) > max_length:
            raise ValueError(
                f"sample {i} has {len(row.ids)} tokens, more than max_length={max_length}; "
                "shorten it or raise the context length"
            )
    groups = _pack([len(r.ids) for r in rows], max_length) if pack else [[i] for i in range(len(rows))]
    T = max(sum(len(rows[i].ids) for i in g) for g in groups)
    return _collate(rows, groups, T, space, weights, padding_side, factors)


def _collate(
    rows: list[_Row], groups: list[list[int]], T: int, space: TokenSpace, weights: dict[str, float],
    side: str, factors: list[float],
) -> SequenceBatch:
    """Write every sample into its row at once: all samples' tokens are concatenated in row order, then
    scattered to their ``(row, column)`` cells (one tensor op per field, not one per sample)."""
    order = [(b, k, i) for b, group in enumerate(groups) for k, i in enumerate(group)]  # row order
    lengths = [len(rows[i].ids) for _, _, i in order]
    starts, blocks = [], []  # per sample: first column, prefix blocks of the samples before it in its row
    for group in groups:
        column = T - sum(len(rows[i].ids) for i in group) if side == "left" else 0
        seen = 0
        for i in group:
            starts.append(column)
            blocks.append(seen)
            column, seen = column + len(rows[i].ids), seen + max(rows[i].prefix, default=0)

    n = torch.tensor(lengths)

    def flat(field: str, dtype: torch.dtype = torch.long) -> torch.Tensor:
        values = chain.from_iterable(getattr(rows[i], field) for _, _, i in order)
        return torch.tensor(list(values), dtype=dtype)

    def each(values: list[int] | list[float], dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).repeat_interleave(n)  # per sample -> per token

    ids, is_target, modality = flat("ids"), flat("target", torch.bool), flat("modality")
    prefix, embed = flat("prefix"), flat("embed", torch.bool)
    position = torch.arange(len(ids)) - each(list(accumulate([0] + lengths[:-1])))  # (N,) within sample
    row, column = each([b for b, _, _ in order]), each(starts) + position

    def grid(values: torch.Tensor, fill: float = 0) -> torch.Tensor:
        """Per-token values ``[N]`` in their ``[B, T]`` cells, ``fill`` elsewhere."""
        out = torch.full((len(groups), T), fill, dtype=values.dtype)
        out[row, column] = values
        return out

    # a position predicts the next token of the same sample, when that token is a target
    predicts = (position < n.repeat_interleave(n) - 1) & is_target.roll(-1)  # (N,)
    weight_of = torch.tensor([1.0] + [weights[m] for m in space.modalities])  # index 0: specials
    factor = each([factors[i] for _, _, i in order], torch.float)
    sources = list(chain.from_iterable(rows[i].sources for _, _, i in order))
    return SequenceBatch(
        input_ids=grid(ids, space.pad_id),
        targets=grid(torch.where(predicts, ids.roll(-1), IGNORE_INDEX), IGNORE_INDEX),
        loss_weights=grid(weight_of[modality.roll(-1)] * predicts * factor),
        modality_ids=grid(modality),
        positions=grid(position),
        sample_ids=grid(each([k + 1 for _, k, _ in order])),
        prefix_blocks=grid(torch.where(prefix > 0, prefix + each(blocks), 0)),
        embed_mask=grid(embed),
        embed_sources=torch.tensor(sources, dtype=torch.long),
    )
