"""DataModule for text-to-image on the built-in scenes: captions with their images and scene objects.

The image tokenizer is a trained ``save_pretrained`` directory (``configs/vq_image_scenes.yaml`` writes
one); its spec and path go into ``vocab``, so the model loads its weights, keeps them frozen and ships
them. Images are tokenized by the model on its device (a small fraction of a training step), not here.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Literal

import torch

from anytoken.tasks.data.base import TaskDataModule
from anytoken.tasks.data.captioning import build_text_tokenizer, webdataset_splits
from anytoken.tasks.data.synthetic.scenes import ScenesCaptionDataset, ScenesConfig
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.image_grid import ImageGrid
from anytoken.tokenizers.image_io import image_to_tensor


class SceneObjectsDataset(ScenesCaptionDataset):
    """``ScenesCaptionDataset`` items plus ``objects``: the scene's objects as dicts (for judging; plain data,
    which Lightning moves between devices)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return super().__getitem__(index) | {"objects": [asdict(o) for o in self.scenes[index].objects]}


class TextToImageDataModule(TaskDataModule):
    """Scenes captions and images as batches for ``TextToImageModule``.

    Args:
        image_tokenizer: directory of a saved image VQ tokenizer (``save_pretrained``; or a Hugging Face
            Emu3 VQ-VAE directory, docs/pretrained_tokenizers.md).
        scenes: scene settings (``image_size`` is the tokenizer's); one object per scene by default.
        num_train: training scenes; ``num_val``/``num_test``/``num_heldout`` likewise (heldout: unseen
            colour-shape pairs).
        text_tokenizer, bpe_vocab_size, tokenizer_path, webdataset: as ``CaptioningDataModule``'s (images
            of tar shards have no scene objects: test reports the loss only).
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s.
    """

    TASK_TAGS = ("draw",)

    def __init__(
        self,
        image_tokenizer: str,
        scenes: ScenesConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 64,
        num_test: int = 256,
        num_heldout: int = 256,
        text_tokenizer: Literal["bpe", "clip_bpe"] = "bpe",
        bpe_vocab_size: int = 320,
        tokenizer_path: str | None = None,
        webdataset: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        try:
            self.image_tokenizer = Tokenizer.from_pretrained(image_tokenizer)
        except FileNotFoundError as err:
            hint = "train one first: anytoken fit --config configs/vq_image_scenes.yaml"
            raise ValueError(f"{err}; {hint}") from None
        if not (isinstance(self.image_tokenizer, ImageGrid) and self.image_tokenizer.decodes):
            raise ValueError(f"{image_tokenizer} holds a {self.image_tokenizer.name} tokenizer, not an image "
                             "tokenizer that decodes (image_vq, emu3_vq)")
        self.image_tokenizer_path = str(image_tokenizer)
        self.image_size = self.image_tokenizer.image_size
        if webdataset is not None:
            self.splits, corpus = webdataset_splits(webdataset, num_val, self.image_size)
        else:
            config = replace(scenes or ScenesConfig(min_objects=1, max_objects=1), image_size=self.image_size)
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
            self.splits = {s: SceneObjectsDataset(s, n, config) for s, n in sizes.items() if n > 0}
            corpus = [scene.caption() for scene in self.splits["train"].scenes]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        tokenizers = {"text": self.tokenizer, "image": self.image_tokenizer}
        self.set_vocab(tokenizers, {"image": self.image_tokenizer_path})

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"images" [B, 3, S, S], "caption_ids", "captions", "objects", "image_ids"}``."""
        captions = [item["caption"] for item in items]
        return {
            "images": torch.stack([image_to_tensor(item["image"], self.image_size) for item in items]),
            "caption_ids": self.tokenizer.encode_batch(captions),
            "captions": captions,
            "objects": [item.get("objects", []) for item in items],
            "image_ids": [item["image_id"] for item in items],
        }
