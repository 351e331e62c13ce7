"""DataModule for captioning: the built-in scenes or a COCO-format captions set, plus the text tokenizer."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from anytoken.tasks.data.base import TaskDataModule, check_source, file_splits, holdout_splits
from anytoken.tasks.data.formats.coco import CocoCaptionsDataset
from anytoken.tasks.data.formats.webdataset import ImageTextShards
from anytoken.tasks.data.synthetic.scenes import ScenesCaptionDataset, ScenesConfig
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.image_io import image_to_tensor
from anytoken.tokenizers.text import BPETokenizer, CLIPBPETokenizer


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


def webdataset_splits(folder: str, num_val: int, image_size: int) -> tuple[dict[str, Dataset], list[str]]:
    """Splits of a folder of image-text tar shards (``holdout_splits``) and the training captions."""
    data = ImageTextShards(folder, image_size)
    splits = holdout_splits(data, num_val, f"the tar shards at {folder}")
    return splits, [data.captions[i] for i in splits["train"].indices]


class CaptioningDataModule(TaskDataModule):
    """Images with captions, as batches for ``CaptioningModule``.

    Args:
        source: ``"scenes"`` (built-in, generated) or ``"coco"`` (a COCO captions JSON + image folder).
        scenes: scene generation settings (source ``"scenes"``).
        num_train: training scenes; ``num_val``/``num_test``/``num_heldout``/``num_heldout_val`` likewise.
        coco_train: ``[annotations.json, images_dir]`` for training (source ``"coco"``); ``coco_val`` for
            validation and testing.
        text_tokenizer: ``"bpe"`` (trained on the training captions) or ``"clip_bpe"`` (open_clip's).
        bpe_vocab_size: size of the trained BPE.
        tokenizer_path: load a saved text tokenizer instead of building one.
        image_tokenizer: a saved image VQ tokenizer: images then enter as its token ids (the model
            tokenizes them; build it with ``image_encoder: null``) instead of encoder features.
        image_size: side of the square images handed to the model.
        webdataset: a folder of WebDataset tar shards (``KEY.jpg`` + ``KEY.txt``, the CC3M/LAION layout)
            instead of ``source``: its last ``num_val`` pairs validate and test, the others train.
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s.
    """

    TASK_TAGS = ("caption", "vqa")

    def __init__(
        self,
        source: Literal["scenes", "coco"] = "scenes",
        scenes: ScenesConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 256,
        num_test: int = 1_000,
        num_heldout: int = 1_000,
        num_heldout_val: int = 0,
        coco_train: tuple[str, str] | None = None,
        coco_val: tuple[str, str] | None = None,
        text_tokenizer: Literal["bpe", "clip_bpe"] = "bpe",
        bpe_vocab_size: int = 512,
        tokenizer_path: str | None = None,
        image_tokenizer: str | None = None,
        image_size: int = 64,
        webdataset: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        check_source(source, "scenes", "coco")
        self.image_size = image_size
        if webdataset is not None:
            if source != "scenes":
                raise ValueError(f"give webdataset or source={source!r}, not both")
            self.splits, corpus = webdataset_splits(webdataset, num_val, image_size)
        elif source == "scenes":
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout,
                     "heldout_val": num_heldout_val}
            config = scenes or ScenesConfig()
            self.splits = {s: ScenesCaptionDataset(s, n, config) for s, n in sizes.items() if n > 0}
            corpus = [scene.caption() for scene in self.splits["train"].scenes]
        else:
            self.splits = file_splits(
                coco_train, coco_val, lambda f, train: CocoCaptionsDataset(*f, one_item_per_caption=train),
                "source='coco' needs coco_train and coco_val, each [annotations.json, images_dir]",
            )
            corpus = [r for refs in self.splits["train"].references.values() for r in refs]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.image_tokenizer_path = image_tokenizer
        self.image_tokenizer = None if image_tokenizer is None else Tokenizer.from_pretrained(image_tokenizer)
        self.set_vocab({"text": self.tokenizer, "image": self.image_tokenizer}, {"image": image_tokenizer})

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
