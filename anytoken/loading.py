"""Reading the files anytoken loads (JSON configs, weights files) with one clear error each.

Every bad file (missing, empty, truncated, corrupt, of another model) raises ``LoadError`` (a
``ValueError``) whose message names the file and the problem; nothing a file holds is imported or called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch import Tensor


class LoadError(ValueError):
    """A checkpoint, release or tokenizer file that cannot be loaded; the message names file and problem."""


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``LoadError`` when it is missing, unreadable or not an object."""
    if not path.is_file():
        raise LoadError(f"{path}: missing ({what} needs it)")
    data = read_file(path, lambda p: json.loads(p.read_text()), "JSON file")
    if not isinstance(data, dict):
        raise LoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_file(path: str | Path, reader: Callable[[Path], Any], what: str) -> Any:
    """``reader(path)``, with ``LoadError`` naming ``path`` for an empty or unreadable file."""
    if Path(path).stat().st_size == 0:
        raise LoadError(f"{path}: empty file")
    try:
        return reader(Path(path))
    except Exception as err:  # noqa: BLE001 - the readers run no code a file names; any failure = unreadable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LoadError(f"{path}: not a readable {what} ({first[:200]})") from None


def read_torch(path: str | Path) -> Any:
    """``torch.load(weights_only=True)``: plain data and tensors only, so no code a file names runs."""
    return read_file(path, partial(torch.load, map_location="cpu", weights_only=True), "checkpoint")


def read_state(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file: safetensors by suffix, else ``read_torch`` (training checkpoints'
    nested ``state_dict``/``model`` and compile/DDP key prefixes unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (no weights file there)")
    safe = path.suffix == ".safetensors"
    state = read_file(path, load_file, "weights file") if safe else read_torch(path)
    for key in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise LoadError(f"{path}: does not hold a state dict of tensors")
    return {re.sub(r"^(_orig_mod\.|module\.)+", "", k): v for k, v in state.items()}


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a weights file into ``module`` (``LoadError``: truncated, corrupt or of another model)."""
    load_state(module, read_state(path), path)


def load_state(module: nn.Module, state: dict[str, Tensor], path: str | Path,
               ignored: set[str] = frozenset()) -> None:
    """``module.load_state_dict(state)`` with one ``LoadError`` naming ``path`` on any mismatch; keys in
    ``ignored`` (pruned parts) are skipped, and tied weights saved once are not counted missing."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k not in ignored}
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = sorted(k for k in own if k not in state and own[k].data_ptr() not in loaded)
    unexpected = sorted(state.keys() - own.keys())
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or shapes:
        raise LoadError(f"{path}: the weights do not fit this {type(module).__name__} ({len(missing)} "
                        f"missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
                        f"{len(shapes)} other shapes {shapes[:5]}): a file of another model?")
    module.load_state_dict(state, strict=False)


def jsonable(value: Any) -> Any:
    """Dataclass configs and tuples -> plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
