"""The tokenizer-training task: the shipped config fits, logs metrics and samples, exports the tokenizer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anytoken.cli import main
from anytoken.tasks.data.images_folder import HELDOUT_PHOTOS, ImageDataModule, PhotoTiles, folder_files
from anytoken.tasks.tokenizer_training import TokenizerTrainingModule
from anytoken.tokenizers import Tokenizer, register_tokenizer
from anytoken.tokenizers.image_vq import ImageVQTokenizer

TINY_VQ = {
    "tokenizer": "image_vq",
    "config": dict(
        image_size=32,
        downsample=8,
        channels=8,
        encoder_channels=8,
        channel_mult=[1, 1, 1],
        codebook_size=16,
        latent_dim=4,
        disc_weight=0.1,
        disc_layers=1,
    ),
}


def callbacks(root: Path) -> str:
    return json.dumps(
        [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(root / "checkpoints"), "save_last": True, "save_top_k": 0},
            },
            {
                "class_path": "anytoken.tasks.tokenizer_training.ExportTokenizer",
                "init_args": {"dirpath": str(root / "tokenizer")},
            },
        ]
    )


def test_vq_image_config_fits_logs_and_exports(tmp_path: Path) -> None:
    main(
        [
            "fit",
            "--config",
            "configs/vq_image_scenes.yaml",
            "--model.init_args.tokenizer",
            json.dumps(TINY_VQ),
            "--trainer.max_steps",
            "4",
            "--trainer.val_check_interval",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--data.init_args.image_size",
            "32",
            "--data.init_args.num_train",
            "16",
            "--data.init_args.num_val",
            "4",
            "--data.init_args.batch_size",
            "4",
            "--data.init_args.num_workers",
            "0",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.callbacks",
            callbacks(tmp_path),
        ]
    )
    tokenizer = Tokenizer.from_pretrained(tmp_path / "tokenizer")
    assert isinstance(tokenizer, ImageVQTokenizer) and tokenizer.discriminator is None
    assert tokenizer.encode(torch.rand(2, 3, 32, 32)).shape == (2, 4, 4)
    log_dir = next((tmp_path / "logs").glob("version_*"))
    rows = list(csv.DictReader(open(log_dir / "metrics.csv")))
    columns = set(rows[0])
    for name in ("val/codebook_usage", "val/perplexity", "val/loss", "val/scenes/psnr", "val/photos/ssim"):
        assert name in columns
    assert sorted(p.name.split("_step")[0] for p in (log_dir / "samples").glob("*.png"))[:2] == [
        "photos",
        "scenes",
    ]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@register_tokenizer
class Digits(Tokenizer):
    """A tokenizer with nothing to train."""

    name = "test_digits"
    modality = "text"
    vocab_size = 10

    def encode(self, x: str) -> torch.Tensor:
        return torch.tensor([int(c) for c in x])

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(map(str, ids.tolist()))


def test_task_rejects_untrainable_tokenizers() -> None:
    with pytest.raises(ValueError, match="not trainable"):
        TokenizerTrainingModule({"tokenizer": "test_digits", "config": {}})


def test_photo_tiles_are_deterministic_and_held_out() -> None:
    tiles = PhotoTiles("heldout", 6, image_size=32, seed=3)
    assert len(tiles.photos) == len(HELDOUT_PHOTOS)
    first = tiles[4]
    assert first.shape == (3, 32, 32) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, PhotoTiles("heldout", 6, image_size=32, seed=3)[4])
    assert not torch.equal(first, tiles[1])


def test_folder_source_splits_files_and_rejects_bad_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "readme.txt").write_text("not an image")
    assert len(folder_files(tmp_path)) == 5
    data = ImageDataModule(
        sources=["folder"], folder=str(tmp_path), image_size=32, val_fraction=0.2, batch_size=2
    )
    assert data.val_names == ["folder"] and len(data.val_sets["folder"]) == 1
    assert next(iter(data.train_dataloader())).shape == (2, 3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        folder_files(tmp_path / "empty")
    with pytest.raises(ValueError, match="needs folder"):
        ImageDataModule(sources=["folder"])
    with pytest.raises(ValueError, match="sources"):
        ImageDataModule(sources=["imagenet"])  # type: ignore[list-item]
