"""Prompt templates as data: which segments a task's samples hold, which tag, which segment is the target.

A template is a list (YAML or Python) of items, one per segment: a special token (``"<bos>"``,
``"<caption>"``); ``{"embeds": "image", "from": "images"}``, placeholders for the encoder features of
``batch["images"]``; or ``{"tokens": "pose", "from": "pose_ids", "target": true}``, local ids of one
modality. Optional keys: ``"index"`` (a batch key holding, per sample, which element of ``"from"`` it uses,
as a VQA question's image), ``"prefix"`` (a bidirectional prefix; ``embeds`` are prefixes), ``"map"`` (a
tokenizer method in ``MAPS`` applied to each element) and ``"encode"`` (keyword arguments: encode the whole
batch value with the modality's tokenizer first, e.g. images with a VQ tokenizer).

Exactly one token segment is the target, and it comes last; with ``targets=False`` it becomes an open
segment, the prompt generation continues. ``TemplateFormat`` (kind ``"template"``) is a task format made
of such data alone: a mixture trains it and scores it by loss and teacher-forced token accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from anytoken.models.formats import AnytokenModel, TaskFormat, open_segment, register_format
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.sequence import Embeds, Segment, Special, Tokens

ITEM_KEYS = {"tokens", "embeds", "from", "index", "target", "prefix", "map", "encode"}
MAPS = ("codes_to_ids",)  # the tokenizer methods a template's "map" may name (it is data: never any name)


@dataclass(frozen=True)
class SegmentSpec:
    """One non-special segment of a template (see the module docstring for the keys)."""

    modality: str
    source: str  # the batch key the ids (or media) come from
    embeds: bool = False
    index: str | None = None
    target: bool = False
    prefix: bool = False
    map: str | None = None
    encode: dict[str, Any] | None = field(default=None, hash=False)


Item = str | SegmentSpec


class Template:
    """A task's prompt layout, parsed from its items (strings for specials, dicts for segments);
    ``ValueError`` on unknown keys, a missing ``from``, no target or several, or a target not last."""

    def __init__(self, items: Sequence[str | Mapping[str, Any]]) -> None:
        self.items: list[Item] = [_parse(item, i) for i, item in enumerate(items)]
        targets = [i for i, item in enumerate(self.items) if isinstance(item, SegmentSpec) and item.target]
        if targets != [len(self.items) - 1]:
            raise ValueError(f"a template needs exactly one target segment, as its last item; got targets at "
                             f"{targets} of {len(self.items)} items")
        self.target: SegmentSpec = self.items[-1]  # type: ignore[assignment]
        if self.target.embeds:
            raise ValueError("the target segment must be 'tokens', not 'embeds' (features are not generated)")

    def num_samples(self, batch: Mapping[str, Any]) -> int:
        """Samples in ``batch``: the length of the first segment source that is not indexed."""
        for item in self.items:
            if isinstance(item, SegmentSpec) and item.index is None:
                return len(_value(batch, item.source))
        first = next(item for item in self.items if isinstance(item, SegmentSpec))
        return len(_value(batch, first.index))

    def samples(self, batch: Mapping[str, Any], targets: bool, tokenizers: Mapping[str, Tokenizer],
                image_tokens: int | None = None) -> list[list[Segment]]:
        """Segments per sample of ``batch``; with ``targets=False`` the prompt generation continues.
        ``tokenizers`` serve ``map`` and ``encode`` items; ``image_tokens`` is the placeholder count of
        one ``embeds`` segment."""
        n = self.num_samples(batch)
        items = self.items if targets else self.items[:-1]
        columns = [_column(item, batch, tokenizers, image_tokens, n) for item in items]
        if not targets:
            columns.append([open_segment(self.target.modality)] * n)
        return [[column[i] for column in columns] for i in range(n)]


def _parse(item: str | Mapping[str, Any], position: int) -> Item:
    if isinstance(item, str):
        if not (item.startswith("<") and item.endswith(">")):
            raise ValueError(f"template item {position}: a special token looks like '<name>', got {item!r}")
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f"template item {position}: expected a string or a mapping, got {item!r}")
    unknown = set(item) - ITEM_KEYS
    kinds = [k for k in ("tokens", "embeds") if k in item]
    if unknown or len(kinds) != 1 or "from" not in item:
        raise ValueError(f"template item {position}: needs exactly one of 'tokens'/'embeds' and a 'from' "
                         f"key, and only the keys {sorted(ITEM_KEYS)}; got {dict(item)}")
    embeds = kinds[0] == "embeds"
    if embeds and (item.get("target") or item.get("map") or "encode" in item or item["from"] != "images"):
        raise ValueError(f"template item {position}: 'embeds' segments read batch['images'] as they are")
    if item.get("map") is not None and item["map"] not in MAPS:
        raise ValueError(f"template item {position}: 'map' must be one of {list(MAPS)}, got {item['map']!r}")
    encode = item.get("encode")
    if encode is not None and not isinstance(encode, Mapping):
        raise ValueError(f"template item {position}: 'encode' must be a mapping of keyword arguments")
    return SegmentSpec(
        modality=str(item[kinds[0]]), source=str(item["from"]), embeds=embeds, index=item.get("index"),
        target=bool(item.get("target", False)), prefix=bool(item.get("prefix", embeds)), map=item.get("map"),
        encode=None if encode is None else dict(encode),
    )


def _value(batch: Mapping[str, Any], key: str) -> Any:
    if key not in batch:
        raise ValueError(f"the template reads batch[{key!r}], but the batch has only {sorted(batch)}")
    return batch[key]


def _column(item: Item, batch: Mapping[str, Any], tokenizers: Mapping[str, Tokenizer],
            image_tokens: int | None, n: int) -> list[Segment]:
    """One item's segment for each of the ``n`` samples."""
    if isinstance(item, str):
        return [Special(item)] * n
    index = [int(i) for i in _value(batch, item.index)] if item.index else list(range(n))
    if item.embeds:
        if image_tokens is None:
            raise ValueError("an 'embeds' segment needs a model with an image encoder")
        return [Embeds(item.modality, image_tokens, source, prefix=item.prefix) for source in index]
    values, tokenizer = _value(batch, item.source), tokenizers.get(item.modality)
    if tokenizer is None and (item.encode is not None or item.map is not None):
        raise ValueError(f"the template encodes {item.modality!r}, but there is no such tokenizer")
    if item.encode is not None:
        values = tokenizer.encode(values, **item.encode)
        values = values.flatten(1) if isinstance(values, torch.Tensor) else values  # (B, N)
    mapped = [getattr(tokenizer, item.map)(values[i]) if item.map else values[i] for i in index]
    return [Tokens(item.modality, torch.as_tensor(ids).cpu(), target=item.target, prefix=item.prefix)
            for ids in mapped]


@register_format
class TemplateFormat(TaskFormat):
    """A task whose layout is a ``Template`` of ``items`` (data): its samples are the template's."""

    kind = "template"

    def __init__(self, items: Sequence[str | Mapping[str, Any]]) -> None:
        super().__init__()
        self.template = Template(items)
        self.items = [item if isinstance(item, str) else dict(item) for item in items]
        self.embeds = any(isinstance(i, SegmentSpec) and i.embeds for i in self.template.items)

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        items, space = self.template.items, model.space
        modalities = {item.modality for item in items if isinstance(item, SegmentSpec)}
        missing = [item for item in items if isinstance(item, str) and item not in space.specials]
        missing += sorted(modalities - set(space.modalities))
        if missing:
            raise ValueError(f"the template uses {missing}, not in the TokenSpace")
        if self.embeds and model.image_encoder is None:
            raise ValueError("the template's 'embeds' segments need a model with an image_encoder")

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        tokens = model.image_tokens if self.embeds else None
        return self.template.samples(batch, targets, model.tokenizers, tokens)

    def num_samples(self, batch: dict[str, Any]) -> int:
        return self.template.num_samples(batch)
