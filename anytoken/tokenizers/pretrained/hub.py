"""What every adapter over a Hugging Face ``transformers`` model shares: the lazy import, building the model
from its config (random weights, filled from a saved state) or loading it from a directory that the library's
``save_pretrained`` wrote, and the allow-list ``HUB_MODELS`` that picks the adapter by ``model_type``.

A directory's ``config.json`` only names a ``model_type``; the adapter class comes from ``HUB_MODELS`` and
the model class from the adapter's own code, never from a name the file holds (``auto_map`` and
``trust_remote_code`` are never used). Weights are read from safetensors only, on the local disk only.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
import torch.nn as nn

from anytoken.loading import LoadError, read_json
from anytoken.registry import Registry
from anytoken.tokenizers.base import FOREIGN_DIRECTORIES

HUB_CONFIG_FILE = "config.json"  # what transformers' save_pretrained writes beside model.safetensors
INSTALL_HINT = "pip install 'anytoken[hub]'"
_VOLATILE_KEYS = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype")

HUB_MODELS = Registry("Hugging Face model_type", "model_type")
register_hub_model = HUB_MODELS.register  # class decorator: the adapter of ``cls.model_type``


def transformers() -> ModuleType:
    """The ``transformers`` module; ``ImportError`` naming the extra to install when it is missing."""
    try:
        import transformers as module
    except ImportError:
        raise ImportError(f"pretrained tokenizers need Hugging Face transformers: {INSTALL_HINT}") from None
    return module


def plain_config(config: Any) -> dict[str, Any]:
    """A transformers config as JSON values without the keys that vary with where and how it was saved
    (so a model loaded from a directory and one rebuilt from this dict have equal ``config()``)."""
    return {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_KEYS}


class HubModel(nn.Module):
    """A frozen ``transformers`` model as ``self.model`` (always in eval mode: its dropout and quantizer
    dropout never run). Subclasses set ``model_type`` and implement ``hub_classes``.

    Args:
        hub_config: the model's config as JSON values (``config.json``); the model is built from it with
            random weights, which a saved state then replaces (``Tokenizer.from_pretrained``, a release).
        model: an already loaded model (``from_hub_directory``); ``hub_config`` must be its config.
    """

    model_type: ClassVar[str]  # config.json's model_type this adapter reads (its HUB_MODELS key)

    def __init__(self, hub_config: dict[str, Any], model: Any = None) -> None:
        super().__init__()
        if model is None:
            config_class, model_class = self.hub_classes()
            if not isinstance(hub_config, dict) or hub_config.get("model_type") != self.model_type:
                raise ValueError(f"{self.name}: hub_config must be a {self.model_type} config dict")
            model = model_class(config_class.from_dict(hub_config))
        self.model = model.eval().requires_grad_(False)
        self.hub_config = plain_config(self.model.config)

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        """``(config class, model class)`` of transformers that this adapter wraps (imported here)."""
        raise NotImplementedError

    @classmethod
    def from_hub_directory(cls, directory: Path, **options: Any) -> HubModel:
        """The adapter over the model in ``directory`` (``config.json`` + ``model.safetensors``, as the
        library's ``save_pretrained`` writes them); ``LoadError`` when the weights do not fit the config."""
        _, model_class = cls.hub_classes()
        try:
            model, info = model_class.from_pretrained(
                directory, local_files_only=True, use_safetensors=True, output_loading_info=True,
                dtype=torch.float32,
            )
        except (OSError, ValueError, TypeError, RuntimeError, KeyError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise LoadError(f"{directory}: not a loadable {model_class.__name__} ({first})") from None
        kinds = ("missing_keys", "unexpected_keys", "mismatched_keys")
        bad = {k: sorted(map(str, info.get(k) or ())) for k in kinds}
        if any(bad.values()):
            found = "; ".join(f"{len(v)} {k.replace('_', ' ')} {v[:3]}" for k, v in bad.items() if v)
            raise LoadError(f"{directory}: the weights do not fit its {model_class.__name__} ({found})")
        return cls(plain_config(model.config), model=model, **options)

    def train(self, mode: bool = True) -> HubModel:
        return super().train(False)  # frozen: a task's model.train() must not switch on dropout

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device


def from_hub_directory(directory: Path) -> Any:
    """The adapter of the ``transformers`` model saved in ``directory``, chosen by its ``config.json``'s
    ``model_type`` from ``HUB_MODELS``; ``LoadError`` for a model type anytoken does not adapt."""
    path = directory / HUB_CONFIG_FILE
    model_type = read_json(path, "a Hugging Face model directory").get("model_type")
    if model_type not in HUB_MODELS:
        raise LoadError(f"{path}: model_type {model_type!r} is not a tokenizer anytoken adapts "
                        f"(adapted: {sorted(HUB_MODELS)})")
    try:
        transformers()
    except ImportError as err:  # a file that cannot be loaded here: one LoadError, as for any bad file
        raise LoadError(f"{directory} holds a {model_type} model; {err}") from None
    return HUB_MODELS[model_type].from_hub_directory(directory)


FOREIGN_DIRECTORIES[HUB_CONFIG_FILE] = from_hub_directory  # Tokenizer.from_pretrained reads these directories
