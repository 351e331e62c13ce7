"""Shrink a shipped YAML config to a few-second smoke run whose outputs land in a temporary directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TRAINER = {
    "max_steps": 2,
    "max_epochs": 1,
    "limit_val_batches": 1,
    "limit_test_batches": 1,
    "limit_predict_batches": 1,
    "log_every_n_steps": 1,
    "enable_progress_bar": False,
    "devices": 1,
    "accelerator": "cpu",
    "precision": "32-true",
}
SMALL = {"batch_size": 8, "num_workers": 0}
BACKBONE = {"n_layer": 1, "n_head": 2, "d_model": 32}


def _rewrite(value: Any, root: Path) -> Any:
    if isinstance(value, dict):
        return {k: _shrink_entry(k, v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, root) for v in value]
    if isinstance(value, str) and value.startswith("runs/"):
        return str(root / value)
    return value


def _shrink_entry(key: str, value: Any, root: Path) -> Any:
    if (
        key.startswith("num_")
        and isinstance(value, int)
        and key not in ("num_beams", "num_codebooks", "num_examples")
    ):
        return min(value, 16) if value > 0 else value
    if key in SMALL and isinstance(value, int):
        return min(value, SMALL[key])
    if key == "backbone" and isinstance(value, dict):
        return {**value, **BACKBONE}
    if key == "image_tokenizer" and isinstance(value, str):
        return _tiny_image_tokenizer(_rewrite(value, root))
    if key == "codec_path" and isinstance(value, str):
        return _tiny_codec(_rewrite(value, root))
    if key == "init_from":  # a trained model to start from; starting from one is tested in tests/tasks
        return None
    if key == "max_new_tokens" and isinstance(value, int):
        return min(value, 8)
    return _rewrite(value, root)


def _tiny_image_tokenizer(path: str) -> str:
    """Configs that consume a trained image tokenizer get a tiny untrained one (2 x 2 tokens of 32 px)."""
    from anytoken.tokenizers.image_vq import ImageVQTokenizer

    if not Path(path).exists():
        tiny = dict(image_size=32, downsample=16, channels=8, encoder_channels=8, channel_mult=[1, 1, 1, 1])
        ImageVQTokenizer(**tiny, codebook_size=16, latent_dim=4).save_pretrained(path)
    return path


def _tiny_codec(path: str) -> str:
    """Configs that consume a trained audio codec (``codec_path``) get a tiny untrained one (4 levels)."""
    from anytoken.tokenizers.audio_codec import AudioCodecTokenizer

    if not Path(path).exists():
        tiny = dict(strides=[10, 20], encoder_channels=4, decoder_channels=16, dilations=[1], latent_dim=8)
        codec = AudioCodecTokenizer(sample_rate=8000, **tiny, codebook_size=16, num_quantizers=4)
        codec.save_pretrained(path)
    return path


def shrink_config(path: Path, root: Path) -> Path:
    """Write a shrunk copy of the config at ``path`` into ``root`` and return its path."""
    config = yaml.safe_load(path.read_text())
    config = _rewrite(config, root)
    config["trainer"] = {**config.get("trainer", {}), **TRAINER, "default_root_dir": str(root)}
    out = root / path.name
    out.write_text(yaml.safe_dump(config))
    return out
