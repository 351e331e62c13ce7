"""Release directories: ``config.json`` (format version, task class, hyperparameters, TokenSpace) plus
``model.safetensors``; they load without Lightning's trainer or the training data.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import load_model, save_model

from anytoken.atomic import atomic_directory

RELEASE_FORMAT = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def export_release(module: nn.Module, hparams: dict[str, Any], directory: str | Path) -> Path:
    """Write ``module`` (unwrapped: no ``_orig_mod.``/``module.`` prefixes) and its hparams atomically."""
    cls = type(module)
    config = {
        "format_version": RELEASE_FORMAT,
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": jsonable(init_args(hparams)),
    }
    with atomic_directory(directory) as tmp:
        save_model(module, str(tmp / WEIGHTS_NAME))  # handles tied (shared) weights
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return Path(directory)


def load_release(directory: str | Path, expected: type | None = None) -> nn.Module:
    """Rebuild the module saved by ``export_release`` and load its weights (eval mode)."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"{directory} is not an anytoken release (needs {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    config = json.loads(path.read_text())
    if config.get("format_version") != RELEASE_FORMAT:
        raise ValueError(f"{path}: unsupported release format_version {config.get('format_version')!r}")
    module_name, _, cls_name = config["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(f"{directory} holds a {cls_name}, not a {expected.__name__}")
    module = cls(**config["init_args"])
    missing, unexpected = load_model(module, str(directory / WEIGHTS_NAME), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{directory}: weights do not match the model "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return module.eval()


def init_args(hparams: dict[str, Any]) -> dict[str, Any]:
    """Saved hyperparameters minus the private keys LightningCLI adds (``_class_path``, ``_instantiator``)."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def jsonable(value: Any) -> Any:
    """Dataclass configs and tuples -> plain JSON values."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
