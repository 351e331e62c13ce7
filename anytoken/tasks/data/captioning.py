"""DataModule for captioning: the built-in scenes or a COCO-format captions set, plus the text tokenizer."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from anytoken.tasks.data.base import TaskDataModule
from anytoken.tasks.data.formats.coco import CocoCaptionsDataset
from anytoken.tasks.data.synthetic.scenes import ScenesCaptionDataset, ScenesConfig
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.image_io import image_to_tensor
from anytoken.tokenizers.space import TokenSpace, Vocab
from anytoken.tokenizers.text import BPETokenizer, CLIPBPETokenizer

TASK_TAGS = ("caption", "vqa")


def build_text_tokenizer(
    kind: Literal["bpe", "clip_bpe"], corpus: list[str], vocab_size: int, path: str | None
) -> Tokenizer:
    """A text tokenizer: loaded from ``path``, open_clip's CLIP BPE, or a BPE trained on ``corpus``."""
    if path is not None:
        return Tokenizer.from_pretrained(path)
    if kind == "clip_bpe":
        return CLIPBPETokenizer()
    if kind != "bpe":
        raise ValueError(f"text_tokenizer must be 'bpe' or 'clip_bpe', got {kind!r}")
    return BPETokenizer.train(corpus, vocab_size=vocab_size)


class CaptioningDataModule(TaskDataModule):
    """Images with captions, as batches for ``CaptioningModule``.

    Args:
        source: ``"scenes"`` (built-in, generated) or ``"coco"`` (a COCO captions JSON + image folder).
        scenes: scene generation settings (source ``"scenes"``).
        num_train: training scenes; ``num_val``/``num_test``/``num_heldout`` likewise.
        coco_train: ``[annotations.json, images_dir]`` for training (source ``"coco"``).
        coco_val: ``[annotations.json, images_dir]`` for validation and testing (source ``"coco"``).
        text_tokenizer: ``"bpe"`` (trained on the training captions) or ``"clip_bpe"`` (open_clip's).
        bpe_vocab_size: size of the trained BPE.
        tokenizer_path: load a saved text tokenizer instead of building one.
        image_tokenizer: a saved image VQ tokenizer: images then enter as its token ids (the model
            tokenizes them; build it with ``image_encoder: null``) instead of encoder features.
        image_size: side of the square images handed to the model.
        batch_size: training batch size; evaluation uses twice this.
        num_workers: DataLoader worker processes.
        seed: shuffling seed (the order is a function of seed and epoch, so resumed runs match).
    """

    def __init__(
        self,
        source: Literal["scenes", "coco"] = "scenes",
        scenes: ScenesConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 256,
        num_test: int = 1_000,
        num_heldout: int = 1_000,
        coco_train: tuple[str, str] | None = None,
        coco_val: tuple[str, str] | None = None,
        text_tokenizer: Literal["bpe", "clip_bpe"] = "bpe",
        bpe_vocab_size: int = 512,
        tokenizer_path: str | None = None,
        image_tokenizer: str | None = None,
        image_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.image_size = image_size
        self.splits = self._make_splits(
            source, scenes, num_train, num_val, num_test, num_heldout, coco_train, coco_val
        )
        corpus = [r for item in _captions(self.splits["train"]) for r in item]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.image_tokenizer_path = image_tokenizer
        self.image_tokenizer = None if image_tokenizer is None else Tokenizer.from_pretrained(image_tokenizer)
        image_vocab = 0 if self.image_tokenizer is None else self.image_tokenizer.vocab_size
        self.space = TokenSpace({"text": self.tokenizer.vocab_size, "image": image_vocab}, tasks=TASK_TAGS)

    @staticmethod
    def _make_splits(
        source: str,
        scenes: ScenesConfig | None,
        num_train: int,
        num_val: int,
        num_test: int,
        num_heldout: int,
        coco_train: tuple[str, str] | None,
        coco_val: tuple[str, str] | None,
    ) -> dict[str, Dataset]:
        if source == "scenes":
            config = scenes or ScenesConfig()
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
            return {split: ScenesCaptionDataset(split, n, config) for split, n in sizes.items() if n > 0}
        if source == "coco":
            if coco_train is None or coco_val is None:
                raise ValueError(
                    "source='coco' needs coco_train and coco_val, each [annotations.json, images_dir]"
                )
            val = CocoCaptionsDataset(*coco_val)
            return {
                "train": CocoCaptionsDataset(*coco_train, one_item_per_caption=True),
                "val": val,
                "test": val,
            }
        raise ValueError(f"source must be 'scenes' or 'coco', got {source!r}")

    def vocabulary(self) -> Vocab:
        tokenizers = {"text": self.tokenizer}
        if self.image_tokenizer is not None:
            tokenizers["image"] = self.image_tokenizer
        return Vocab(self.space, tokenizers, paths={"image": self.image_tokenizer_path})

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"images" [B, 3, S, S], "caption_ids", "references", "image_ids"}``."""
        captions = [item["caption"].strip() for item in items]
        for item, caption in zip(items, captions):
            if not caption:
                raise ValueError(f"empty caption for image {item['image_id']!r}")
        return {
            "images": torch.stack([image_to_tensor(item["image"], self.image_size) for item in items]),
            "caption_ids": self.tokenizer.encode_batch(captions),
            "references": [item["references"] for item in items],
            "image_ids": [item["image_id"] for item in items],
        }


def _captions(dataset: Dataset) -> list[list[str]]:
    """Reference lists of a captions dataset without rendering or loading images."""
    if isinstance(dataset, ScenesCaptionDataset):
        return [[scene.caption()] for scene in dataset.scenes]
    if isinstance(dataset, CocoCaptionsDataset):
        return list(dataset.references.values())
    raise TypeError(f"unsupported dataset {type(dataset).__name__}")
