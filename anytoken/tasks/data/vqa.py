"""VQA data: the built-in scenes questions or the VQA v2 format, batched by image: an image is rendered or
decoded and encoded once for all its questions (about 10 per scene, 5 per VQA v2 image), which makes
training several times cheaper."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from anytoken.tasks.data.base import TaskDataModule, check_source, file_splits
from anytoken.tasks.data.captioning import CaptioningDataModule, build_text_tokenizer
from anytoken.tasks.data.formats.vqa_v2 import VQAv2Dataset
from anytoken.tasks.data.synthetic.scenes import ScenesConfig, ScenesVQADataset
from anytoken.tasks.metrics.text import normalize_answer
from anytoken.tokenizers.image_io import image_to_tensor


def question_records(dataset: Dataset) -> list[dict[str, Any]]:
    """``{"question", "answer", "answers", "image_key", "image_id"}`` per question, without loading any
    image (``image_id`` as the items have it)."""
    if isinstance(dataset, ScenesVQADataset):
        return [{"question": qa.question, "answer": qa.answer, "answers": [qa.answer] * 10, "image_key": s,
                 "image_id": f"scenes-{dataset.split}-{s}"} for s, qa in dataset.items]
    if isinstance(dataset, VQAv2Dataset):
        return [r | {"image_key": r["image_id"]} for r in dataset.records]
    raise TypeError(f"unsupported VQA dataset {type(dataset).__name__}")


class ByImage(Dataset):
    """Groups a VQA dataset's questions by image: item ``g`` is ``{"items": the items of the g-th image,
    "caption": its caption or None}`` (scenes have one; VQA v2 has none).

    ``max_questions > 0`` keeps that many of each image's questions, a fixed random subset per
    ``(seed, image)``: more images per second of training when each carries ~10 questions.
    """

    def __init__(self, dataset: Dataset, max_questions: int = 0, seed: int = 0) -> None:
        if max_questions < 0:
            raise ValueError(f"max_questions must be >= 0 (0: all), got {max_questions}")
        self.dataset, self.max_questions, self.seed = dataset, max_questions, seed
        groups: dict[Any, list[int]] = {}
        for i, record in enumerate(question_records(dataset)):
            groups.setdefault(record["image_key"], []).append(i)
        self.groups = list(groups.values())
        scenes = dataset.scenes if isinstance(dataset, ScenesVQADataset) else None
        self.captions = [scenes[key].caption() for key in groups] if scenes is not None else None

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        caption = self.captions[index] if self.captions is not None else None
        group = self.groups[index]
        if 0 < self.max_questions < len(group):
            group = sorted(random.Random(f"{self.seed}/{index}").sample(group, self.max_questions))
        return {"items": [self.dataset[i] for i in group], "caption": caption}


def answer_vocabulary(records: list[dict[str, Any]], num_answers: int) -> list[str]:
    """The ``num_answers`` most frequent answers (ties: first seen first), for the classification head."""
    counts = Counter(r["answer"].strip().lower() for r in records)
    return [answer for answer, _ in counts.most_common(num_answers)]


class VQADataModule(TaskDataModule):
    """Questions about images, as batches for ``VQAModule``; one batch holds ``batch_size`` images with
    all their questions (``splits`` holds each split's ``ByImage`` groups).

    Args:
        source: ``"scenes"`` (built-in, generated) or ``"vqa_v2"`` (questions JSON + annotations JSON +
            image folder).
        scenes: scene generation settings (source ``"scenes"``).
        num_train: training scenes; ``num_val``/``num_test``/``num_heldout``/``num_heldout_val`` likewise
            (each has ~10 questions).
        vqa_train: ``[questions.json, annotations.json, images_dir]`` for training (source ``"vqa_v2"``).
        vqa_val: the same for validation and testing (source ``"vqa_v2"``).
        question_type_key: VQA v2 field the per-type accuracy groups by (``answer_type`` or
            ``question_type``).
        num_answers: classes of the classification head: the most frequent training answers.
        text_tokenizer, bpe_vocab_size, tokenizer_path, image_size: as ``CaptioningDataModule``'s (the BPE
            trains on the training questions and answers).
        batch_size: training images per batch (with all their questions); evaluation uses twice this.
        train_questions_per_image: keep this many questions per training image (a fixed random subset
            per image and seed); 0 keeps all. Evaluation always asks every question.
        num_workers, seed, shards: as ``TaskDataModule``'s.
    """

    TASK_TAGS = CaptioningDataModule.TASK_TAGS
    INDEX_KEYS = {"image_index": "images"}

    def __init__(
        self,
        source: Literal["scenes", "vqa_v2"] = "scenes",
        scenes: ScenesConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 64,
        num_test: int = 500,
        num_heldout: int = 500,
        num_heldout_val: int = 0,
        vqa_train: tuple[str, str, str] | None = None,
        vqa_val: tuple[str, str, str] | None = None,
        question_type_key: Literal["answer_type", "question_type"] = "answer_type",
        num_answers: int = 1000,
        text_tokenizer: Literal["bpe", "clip_bpe"] = "bpe",
        bpe_vocab_size: int = 512,
        tokenizer_path: str | None = None,
        image_size: int = 64,
        batch_size: int = 16,
        train_questions_per_image: int = 0,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        if num_answers < 2:
            raise ValueError(f"num_answers must be at least 2, got {num_answers}")
        check_source(source, "scenes", "vqa_v2")
        self.image_size = image_size
        if source == "scenes":
            if num_train < 1:
                raise ValueError("source='scenes' needs num_train >= 1")
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout,
                     "heldout_val": num_heldout_val}
            config = scenes or ScenesConfig()
            datasets = {split: ScenesVQADataset(split, n, config) for split, n in sizes.items() if n > 0}
        else:
            datasets = file_splits(
                vqa_train, vqa_val, lambda f, _: VQAv2Dataset(*f, question_type_key=question_type_key),
                "source='vqa_v2' needs vqa_train and vqa_val, each [questions.json, annotations.json, "
                "images_dir]",
            )
        self.splits = {split: ByImage(dataset, train_questions_per_image if split == "train" else 0, seed)
                       for split, dataset in datasets.items()}
        records = question_records(self.splits["train"].dataset)
        corpus = [text for r in records for text in (r["question"], r["answer"])]
        corpus += self.splits["train"].captions or []
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.answers = answer_vocabulary(records, num_answers)
        self._class_of = {normalize_answer(a): i for i, a in reversed(list(enumerate(self.answers)))}
        self.set_vocab({"text": self.tokenizer, "image": None}, answers=self.answers)

    def answer_scores(self, answers: list[str]) -> torch.Tensor:
        """Soft target ``[num_answers]``: ``min(#humans giving the class / 3, 1)`` per class."""
        scores = torch.zeros(len(self.answers))
        for label, count in Counter(normalize_answer(a) for a in answers).items():
            if label in self._class_of:
                scores[self._class_of[label]] = min(count / 3, 1.0)
        return scores

    def collate(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """``ByImage`` items -> ``{"images" [N, 3, S, S], "image_index" [Q], "question_tokens",
        "answer_tokens", "answer_scores" [Q, K], "questions", "answers", "question_types", "image_ids"}``
        plus ``"caption_tokens"`` (one per image) when every image has a caption."""
        items = [(g, item) for g, group in enumerate(groups) for item in group["items"]]
        for _, item in items:
            if not item["question"].strip() or not item["answer"].strip():
                raise ValueError(f"empty question or answer for image {item['image_id']!r}")
        captions = [group["caption"] for group in groups]
        extra = {} if None in captions else {"caption_tokens": self.tokenizer.encode_batch(captions)}
        return extra | {
            "images": torch.stack([image_to_tensor(group["items"][0]["image"], self.image_size)
                                   for group in groups]),
            "image_index": torch.tensor([g for g, _ in items], dtype=torch.long),
            "question_tokens": self.tokenizer.encode_batch([item["question"].strip() for _, item in items]),
            "answer_tokens": self.tokenizer.encode_batch([item["answer"].strip() for _, item in items]),
            "answer_scores": torch.stack([self.answer_scores(item["answers"]) for _, item in items]),
            "questions": [item["question"] for _, item in items],
            "answers": [item["answers"] for _, item in items],
            "question_types": [item["question_type"] for _, item in items],
            "image_ids": [item["image_id"] for _, item in items],
        }

