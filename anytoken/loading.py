"""Reading the files anytoken writes (JSON configs, safetensors weights) with one clear error each.

Every bad file (missing, empty, truncated, corrupt, of another model) raises ``LoadError`` (a
``ValueError``) whose message names the file and the problem; nothing a file holds is imported or called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file


class LoadError(ValueError):
    """A checkpoint, release or tokenizer file that cannot be loaded; the message names file and problem."""


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``LoadError`` when it is missing, unreadable or not an object."""
    if not path.is_file():
        raise LoadError(f"{path}: missing ({what} needs it)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoadError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise LoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into ``module``; ``LoadError`` when it is truncated, corrupt or holds
    other weights (names what is missing, unexpected or of another shape)."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{path}: missing (the model's weights)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise LoadError(f"{path}: not a readable safetensors file ({err})") from None
    load_state(module, state, path)


def load_state(module: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """``module.load_state_dict(state)`` with one clear ``LoadError`` naming ``path`` on any mismatch.

    Tied weights saved once (safetensors keeps one name of a shared tensor) are not counted missing."""
    own = module.state_dict()
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = sorted(k for k in own if k not in state and own[k].data_ptr() not in loaded)
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        raise LoadError(f"{path}: the weights do not fit this model (missing {missing[:5]}, unexpected "
                        f"{unexpected[:5]}, other shapes {shapes[:5]}): a file of another model?")
    module.load_state_dict(state, strict=False)
