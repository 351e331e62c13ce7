"""Growing a trained model into a larger TokenSpace (e.g. a single-task model into an any-to-any mixture).

``token_id_map`` finds each old id's counterpart: the same special token, or the same modality with the
same tokenizer (two text tokenizers of one kind share the ids whose entries are equal, ``piece_map``).
``grow_into`` copies every weight and each old embedding (and untied LM-head) row to its new id. New rows
are drawn at the scale of the trained ones: a fresh N(0, 0.02) row is about 5x shorter, so new question
words would start nearly invisible to the trained layers (``benchmarks/README.md``: scenes VQA accuracy
0.931-0.953 -> 0.960-0.975). The grown model gives the old one's logits on its prompts, at the mapped ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from anytoken.loading import jsonable
from anytoken.models.formats import format_spec
from anytoken.models.model import AnytokenModel
from anytoken.models.projector import TokenPositions
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.space import TokenSpace
from anytoken.tokenizers.text import TextTokenizer


def token_id_map(old: TokenSpace, new: TokenSpace, modalities: set[str] | None = None,
                 local_maps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``[old.used_size]`` new global id of each old id, ``-1`` where the new space has no counterpart.

    Args:
        modalities: those whose ids carry over (same tokenizer in both); default all shared of equal size.
        local_maps: modality -> ``[old size]`` new local id of each old local id (``-1``: none), for a
            modality whose two tokenizers differ (``piece_map``).
    """
    out = torch.full((old.used_size,), -1, dtype=torch.long)
    for token, gid in old.specials.items():
        if token in new.specials:
            out[gid] = new.specials[token]
    for name, size in old.modalities.items():
        if size == 0 or name not in new.modalities or (modalities is not None and name not in modalities):
            continue
        local = (local_maps or {}).get(name)  # (size,)
        if local is None:
            if new.modalities[name] != size:
                raise ValueError(f"modality {name!r} has {size} ids in the old space but "
                                 f"{new.modalities[name]} in the new one: they are different tokenizers")
            local = torch.arange(size)
        kept = torch.nonzero(local >= 0).squeeze(1)
        out[old.range(name).start + kept] = new.range(name).start + local[kept]
    return out


def piece_map(old: Tokenizer, new: Tokenizer) -> torch.Tensor | None:
    """``[old vocab]`` the ``new`` id of each ``old`` id with the same vocabulary entry (``-1``: none), or
    None when the two are not text tokenizers of the same kind."""
    if not (isinstance(old, TextTokenizer) and type(old) is type(new)):
        return None
    index = {piece: i for i, piece in enumerate(new.pieces())}
    return torch.tensor([index.get(piece, -1) for piece in old.pieces()], dtype=torch.long)


def _spec_key(model: AnytokenModel, modality: str) -> str:
    return json.dumps(jsonable(model.tokenizers[modality].spec()), sort_keys=True)


_NOT_ARCHITECTURE = ("vocab_size", "dropout")  # backbone settings two grown models may differ in
_ENCODER_TRAINING = ("frozen", "augment_shift", "pretrained_path")  # encoder settings they may differ in


@torch.no_grad()
def grow_into(source: AnytokenModel, target: AnytokenModel) -> dict[str, Any]:
    """Copy ``source``'s weights into ``target``, whose TokenSpace must contain ``source``'s.

    Returns ``{"mapped_ids", "new_ids", "modalities", "formats"}``: old ids carried over, target ids that
    start fresh, the modalities whose ids carried over, and the target formats that took the source's
    weights. ``ValueError`` when the architectures differ (other than in ``_NOT_ARCHITECTURE`` and
    ``_ENCODER_TRAINING``) or a shared modality is tokenized differently (other than ``piece_map``'s case).
    """
    _check_same(source.backbone.config, target.backbone.config, _NOT_ARCHITECTURE, "backbones")
    if (source.image_encoder is None) != (target.image_encoder is None):
        raise ValueError("one model has an image encoder and the other has none")
    if source.image_encoder is not None:
        encoders = source.image_encoder.config, target.image_encoder.config
        _check_same(*encoders, _ENCODER_TRAINING, "image encoders")
    shared = [name for name in source.tokenizers if name in target.tokenizers]
    local_maps = {}
    for name in shared:
        if _spec_key(source, name) != _spec_key(target, name):
            local_maps[name] = piece_map(source.tokenizers[name], target.tokenizers[name])
            if local_maps[name] is None:
                raise ValueError(f"the two models tokenize {name!r} differently: its ids cannot carry over")
    mapping = token_id_map(source.space, target.space, set(shared), local_maps)  # (V_old,)
    old_ids = torch.nonzero(mapping >= 0).squeeze(1)
    new_ids = mapping[old_ids]
    state = {k: v for k, v in source.backbone.state_dict().items() if k != "embed.weight"}
    target.backbone.load_state_dict(state, strict=False)
    _carry_rows(target.backbone.embed.weight, source.backbone.embed.weight, old_ids, new_ids)
    if not target.backbone.config.tie_embeddings:
        _carry_rows(target.lm_head.proj.weight, source.lm_head.proj.weight, old_ids, new_ids)
    if source.image_encoder is not None:
        target.image_encoder.load_state_dict(source.image_encoder.state_dict())
        _load_projector(target.projector, source.projector)
    for name, tokenizer in source.media_tokenizers.items():
        target.media_tokenizers[name].load_state_dict(tokenizer.state_dict())
    return {"mapped_ids": len(old_ids), "new_ids": target.space.used_size - len(old_ids),
            "modalities": sorted(shared), "formats": _carry_formats(source, target)}


def _carry_formats(source: AnytokenModel, target: AnytokenModel) -> list[str]:
    """Names of the ``target`` formats with weights (a VQA classifier) that took those of ``source``'s format
    of the same spec, when the vocabulary extras they may read (``answers``) are the same too."""
    extras = [{k: v for k, v in m.vocab.items() if k not in ("token_space", "tokenizers")}
              for m in (source, target)]
    carried = []
    for name, fmt in target.formats.items():
        match = next((f for f in source.formats.values() if format_spec(f) == format_spec(fmt)), None)
        if match is not None and extras[0] == extras[1] and fmt.state_dict():
            fmt.load_state_dict(match.state_dict())
            carried.append(name)
    return carried


def _check_same(source: Any, target: Any, ignored: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError`` naming the fields in which two config dataclasses differ, ``ignored`` aside."""
    a, b = asdict(source), asdict(target)
    diffs = {k: (a[k], b[k]) for k in a if k not in ignored and a[k] != b[k]}
    if diffs:
        raise ValueError(f"the {what} differ in more than {', '.join(ignored)}: {diffs} (source, target)")


def _carry_rows(target: torch.Tensor, source: torch.Tensor, old_ids: torch.Tensor,
                new_ids: torch.Tensor) -> None:
    """Rows ``old_ids`` of ``source`` become rows ``new_ids`` of ``target``; every other row of ``target``
    is drawn at the carried rows' scale (their per-dimension mean and std), so new tokens (question
    words the source never saw) are as visible in the residual stream as the old ones from the start."""
    carried = source[old_ids]  # (K, d)
    target[new_ids] = carried
    if len(carried) < 2:  # no scale to measure: the fresh rows keep their initialisation
        return
    fresh = torch.ones(len(target), dtype=torch.bool, device=target.device)
    fresh[new_ids] = False
    noise = torch.randn(int(fresh.sum()), target.shape[1], device=target.device)
    target[fresh] = carried.mean(0) + noise * carried.std(0)


def _load_projector(target: nn.Module, source: nn.Module) -> None:
    """``source``'s projector weights into ``target``'s; a ``TokenPositions`` only ``target`` has (a model
    that adds ``image_positions`` to a captioner without them) keeps its initialisation."""
    if _has_positions(source) and not _has_positions(target):
        raise ValueError("the source model adds image_positions after its projector: set image_positions too")
    if _has_positions(target) and not _has_positions(source):
        target = target[:-1] if len(target) > 2 else target[0]  # the projection before the positions
    target.load_state_dict(source.state_dict())


def _has_positions(projector: nn.Module) -> bool:
    return isinstance(projector, nn.Sequential) and isinstance(projector[-1], TokenPositions)
