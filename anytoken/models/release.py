"""Release directories: ``config.json`` (format version and the model's settings as plain JSON) plus
``model.safetensors``; reading one never imports or calls a name the file holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import save_model

from anytoken.atomic import atomic_directory
from anytoken.loading import LoadError, read_json

RELEASE_FORMAT = 2
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_release(module: nn.Module, config: dict[str, Any], directory: str | Path) -> Path:
    """Write ``module``'s weights and ``config`` (plus the format version) to ``directory`` atomically."""
    with atomic_directory(directory) as tmp:
        save_model(module, str(tmp / WEIGHTS_NAME))  # handles tied (shared) weights
        text = json.dumps({"format_version": RELEASE_FORMAT, **jsonable(config)}, indent=2)
        (tmp / CONFIG_NAME).write_text(text)
    return Path(directory)


def read_release_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a release directory, minus the format version, which must be this one's."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LoadError(f"{directory}: no release directory there")
    config = read_json(directory / CONFIG_NAME, "an anytoken release")
    version = config.pop("format_version", None)
    if version != RELEASE_FORMAT:
        raise LoadError(f"{directory / CONFIG_NAME}: release format_version {version!r}; this anytoken reads "
                        f"{RELEASE_FORMAT} (re-export older releases with the anytoken that wrote them)")
    return config


def jsonable(value: Any) -> Any:
    """Dataclass configs and tuples -> plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
