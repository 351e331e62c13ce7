"""Growing a trained model into a larger TokenSpace (e.g. a single-task model into an any-to-any mixture).

Every global id of the old space has a counterpart in the new one when the new space holds its special
token or its modality with the same tokenizer: ``token_id_map`` finds it. Two different text tokenizers
(e.g. a BPE trained on captions and one trained on captions and questions) share the ids whose
vocabulary entries are equal (``TextTokenizer.pieces``); those carry over, the others start fresh.
``grow_into`` then copies the backbone, the image encoder, the projector and the frozen media tokenizers
as they are, copies each old embedding (and untied LM-head) row to its new id, and leaves the rows of new
tokens at their fresh initialisation. The grown model computes the same logits as the old one on the old
model's prompts, at the mapped ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import torch

from anytoken.tasks.module import TokenTaskModule
from anytoken.tasks.release import jsonable
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.space import TokenSpace
from anytoken.tokenizers.text import TextTokenizer


def token_id_map(
    old: TokenSpace,
    new: TokenSpace,
    modalities: set[str] | None = None,
    local_maps: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``[old.used_size]`` new global id of each old id, ``-1`` where the new space has no counterpart.

    Args:
        old: the trained model's space.
        new: the space it grows into.
        modalities: the modalities whose ids carry over (same tokenizer in both); default all shared ones
            of equal size.
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
        r_old, r_new = old.range(name), new.range(name)
        if local_maps and name in local_maps:
            local = local_maps[name]  # (size,)
            kept = torch.nonzero(local >= 0).squeeze(1)
            out[r_old.start + kept] = r_new.start + local[kept]
            continue
        if new.modalities[name] != size:
            raise ValueError(f"modality {name!r} has {size} ids in the old space but {new.modalities[name]} "
                             "in the new one: they are different tokenizers")
        out[r_old.start : r_old.stop] = torch.arange(r_new.start, r_new.stop)
    return out


def piece_map(old: Tokenizer, new: Tokenizer) -> torch.Tensor | None:
    """``[old vocab]`` the ``new`` id of each ``old`` id with the same vocabulary entry (``-1``: none), or
    None when the two are not text tokenizers of the same kind."""
    if not (isinstance(old, TextTokenizer) and type(old) is type(new)):
        return None
    index = {piece: i for i, piece in enumerate(new.pieces())}
    return torch.tensor([index.get(piece, -1) for piece in old.pieces()], dtype=torch.long)


def _spec_key(model: TokenTaskModule, modality: str) -> str:
    return json.dumps(jsonable(model.tokenizers[modality].spec()), sort_keys=True)


@torch.no_grad()
def grow_into(source: TokenTaskModule, target: TokenTaskModule) -> dict[str, Any]:
    """Copy ``source``'s weights into ``target``, whose TokenSpace must contain ``source``'s.

    Returns:
        ``{"mapped_ids", "new_ids", "modalities"}``: how many old ids were carried over, how many of the
        target's used ids start fresh, and the modalities whose ids carried over.

    Raises:
        ValueError: when the backbones differ in anything but vocabulary size, a shared modality is
            tokenized differently (other than by two text tokenizers of one kind, matched by
            ``piece_map``), or an image encoder is missing on one side.
    """
    a, b = asdict(source.backbone.config), asdict(target.backbone.config)
    a.pop("vocab_size"), b.pop("vocab_size")
    if a != b:
        diffs = {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
        raise ValueError(f"the backbones differ in more than the vocabulary: {diffs}")
    shared, local_maps = set(), {}
    for name in source.tokenizers:
        if name in target.tokenizers:
            if _spec_key(source, name) != _spec_key(target, name):
                local = piece_map(source.tokenizers[name], target.tokenizers[name])
                if local is None:
                    raise ValueError(
                        f"the two models tokenize {name!r} differently: its ids cannot carry over"
                    )
                local_maps[name] = local
            shared.add(name)
    mapping = token_id_map(source.space, target.space, shared, local_maps)  # (V_old,)
    old_ids = torch.nonzero(mapping >= 0).squeeze(1)
    new_ids = mapping[old_ids]
    state = {k: v for k, v in source.backbone.state_dict().items() if k != "embed.weight"}
    target.backbone.load_state_dict(state, strict=False)
    target.backbone.embed.weight[new_ids] = source.backbone.embed.weight[old_ids]
    if not target.backbone.config.tie_embeddings:
        target.lm_head.proj.weight[new_ids] = source.lm_head.proj.weight[old_ids]
    if (source.image_encoder is None) != (target.image_encoder is None):
        raise ValueError("one model has an image encoder and the other has none")
    if source.image_encoder is not None:
        target.image_encoder.load_state_dict(source.image_encoder.state_dict())
        target.projector.load_state_dict(source.projector.state_dict())
    for name, tokenizer in source.media_tokenizers.items():
        target.media_tokenizers[name].load_state_dict(tokenizer.state_dict())
    return {
        "mapped_ids": int(old_ids.numel()),
        "new_ids": target.space.used_size - int(old_ids.numel()),
        "modalities": sorted(shared),
    }
