"""A shuffling sampler whose order depends only on (seed, epoch), so a resumed run sees the same batches, and
the DataLoader every task DataModule builds on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class SeededSampler(Sampler[int]):
    """Random permutation of ``range(n)`` drawn from ``seed + epoch``; Lightning calls ``set_epoch``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def split_loader(
    dataset: Sized,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any],
    train: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    eval_batch_size: int | None = None,
) -> DataLoader:
    """A split's DataLoader: seeded shuffling and full batches only while training; evaluation in order,
    with ``eval_batch_size`` (default twice ``batch_size``: no gradients to keep)."""
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size if train else eval_batch_size or 2 * batch_size,
        sampler=SeededSampler(len(dataset), seed) if train else None,
        drop_last=train and len(dataset) >= batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
