"""One loader for release directories and Lightning ``.ckpt`` files, safe by construction: ``.ckpt`` files
are read with ``weights_only=True``, the model is always ``AnytokenModel`` and its formats are looked up by
kind in ``FORMATS``, so no name a file holds is imported or called; a bad file raises ``LoadError``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anytoken.loading import LoadError, load_state, read_torch
from anytoken.models import AnytokenModel

MODEL_KEY = "anytoken_model"  # a task's checkpoint: its model's config() (plain JSON values)
PREFIX = "model."  # a task's state dict holds its model under this prefix


def load(path: str | Path) -> AnytokenModel:
    """The model in a release directory or a ``.ckpt`` file written by an anytoken task (eval mode).

    Raises:
        FileNotFoundError: nothing at ``path``.
        LoadError: the file is not a loadable anytoken model (the message says why).
    """
    path = Path(path)
    if path.is_dir():
        return AnytokenModel.from_pretrained(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or release directory at {path}")
    checkpoint = read_checkpoint(path)
    config = checkpoint.get(MODEL_KEY)
    if config is None:
        raise LoadError(f"{path}: not an anytoken model checkpoint (no {MODEL_KEY!r} entry)")
    model = AnytokenModel.from_config(config, path)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise LoadError(f"{path}: no state_dict in the checkpoint")
    load_state(model, {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}, path)
    return model.eval()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ``.ckpt`` file's dict (``read_torch``); ``LoadError`` for anything else."""
    checkpoint = read_torch(path)
    if not isinstance(checkpoint, dict):
        raise LoadError(f"{path}: a checkpoint holds a dict, this file holds a {type(checkpoint).__name__}")
    return checkpoint
