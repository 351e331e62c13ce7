"""What every DataModule shares: ``TaskDataModule`` (a task's splits, loaders and vocabulary),
``TokenizerDataModule`` (unlabelled batches for training a tokenizer), their seeded loaders and
``HostBatches`` (no walk over a batch that stays on the CPU)."""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any, ClassVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from anytoken.tasks.data.sampling import ResumableLoader, ShardSampler
from anytoken.tasks.data.shards import TokenShards, merge_records, vocab_digest
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.space import TokenSpace, Vocab


def split_loader(dataset: Sized, batch_size: int, collate_fn: Callable[[list[Any]], Any] | None,
                 train: bool = False, seed: int = 0, num_workers: int = 0,
                 eval_batch_size: int | None = None, shard: tuple[int, int] | None = None) -> DataLoader:
    """A split's DataLoader over this process's share of it (``ShardSampler``; ``shard``: ``(processes,
    rank)``, default the running ``torch.distributed`` group's). Training: seeded shuffling, full batches and
    a position Lightning checkpoints (``ResumableLoader``); evaluation in order, with ``eval_batch_size``
    (default twice ``batch_size``: no gradients to keep). The loader's own generator seeds its workers, so
    loading never draws from the global RNG."""
    sampler = ShardSampler(len(dataset), shuffle=train, seed=seed, shard=shard)
    return (ResumableLoader if train else DataLoader)(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size if train else eval_batch_size or 2 * batch_size,
        sampler=sampler,
        drop_last=train and len(sampler) >= batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
    )


class HostBatches:
    """DataModule mixin: a batch bound for the CPU is left as the loader built it (there already), where
    Lightning's default walks every list of ids and strings in it (2-3 ms a VQA training step)."""

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)  # type: ignore[misc]


class TaskDataModule(HostBatches, L.LightningDataModule):
    """Subclasses fill ``self.splits`` (split name -> dataset), call ``set_vocab`` and implement ``collate``.

    Training reads ``train`` (seeded shuffling, full batches), validation every split of ``VAL_SPLITS``
    present (``val``, and ``heldout_val`` where a task holds out combinations: settings for unseen data
    are chosen there, never on ``heldout``), testing every split of ``TEST_SPLITS`` present, in that
    order (``val_splits``/``test_splits`` name them for the task's metrics), and predicting ``test``.

    Args:
        batch_size: training batch size; evaluation uses twice this.
        num_workers: DataLoader worker processes.
        seed: shuffling seed (the order is a function of seed and epoch, so resumed runs match).
        shards: train from the token shards ``anytoken tokenize`` wrote to this folder instead of the
            ``train`` split (docs/data_at_scale.md); evaluation splits are read as usual.
    """

    VAL_SPLITS: ClassVar[tuple[str, ...]] = ("val", "heldout_val")
    TEST_SPLITS: ClassVar[tuple[str, ...]] = ("test", "heldout")
    TASK_TAGS: ClassVar[tuple[str, ...]] = ()  # the task tags of the TokenSpace
    INDEX_KEYS: ClassVar[dict[str, str]] = {}  # batch key -> the key whose rows it indexes (merge_records)

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0,
                 shards: str | None = None) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed, self.shards = batch_size, num_workers, seed, shards
        self.splits: dict[str, Dataset] = {}

    def set_vocab(self, tokenizers: dict[str, Tokenizer | None], paths: dict[str, str | None] | None = None,
                  **extras: Any) -> None:
        """Sets ``space`` (one range per modality, in order, of its tokenizer's size; None: no ids, the
        modality enters as encoder features) and ``vocabulary()``; ``paths``: modality -> the directory its
        tokenizer was loaded from; ``extras``: further vocab values (VQA's ``answers``)."""
        sizes = {m: 0 if t is None else t.vocab_size for m, t in tokenizers.items()}
        self.space = TokenSpace(sizes, tasks=self.TASK_TAGS)
        used = {m: t for m, t in tokenizers.items() if t is not None}
        self._vocabulary = Vocab(self.space, used, paths or {}, extras)

    def collate(self, items: list[Any]) -> Any:
        """A list of dataset items -> one batch."""
        raise NotImplementedError

    def vocabulary(self) -> Vocab:
        """The TokenSpace and tokenizers the model is built with."""
        return self._vocabulary

    @property
    def vocab(self) -> dict[str, Any]:
        """``vocabulary()`` in plain form: the CLI links it into the model's ``vocab``."""
        return self.vocabulary().to_dict()

    @property
    def val_splits(self) -> list[str]:
        """Names of the validation dataloaders, in order."""
        return [s for s in self.VAL_SPLITS if s in self.splits]

    @property
    def test_splits(self) -> list[str]:
        """Names of the test dataloaders, in order."""
        return [s for s in self.TEST_SPLITS if s in self.splits]

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split``."""
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__} has no {split!r} split (it has {list(self.splits)})")
        return split_loader(self.splits[split], self.batch_size, self.collate, train, self.seed,
                            self.num_workers)

    def train_dataloader(self) -> DataLoader:
        if self.shards is None:
            return self.loader("train", train=True)
        data = TokenShards(self.shards, vocab_digest(self.vocabulary()))
        return split_loader(data, self.batch_size, self.shard_batch, True, self.seed, self.num_workers)

    def shard_samples(self) -> int:
        """Training samples ``anytoken tokenize`` writes (``shard_record`` of each index)."""
        return len(self.splits["train"])

    def shard_record(self, index: int) -> dict[str, Any]:
        """Training sample ``index`` as a one-sample batch (media tokenized by the writer, then stored)."""
        return self.collate([self.splits["train"][index]])

    def shard_records(self, indices: range) -> list[dict[str, Any]]:
        """``shard_record`` of each index (a DataModule may batch the work, e.g. encode audio together)."""
        return [self.shard_record(i) for i in indices]

    def shard_batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Stored records -> the batch ``collate`` makes of those samples."""
        return merge_records(records, self.INDEX_KEYS)

    def val_dataloader(self) -> list[DataLoader]:
        return [self.loader(s) for s in self.val_splits]

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader(s) for s in self.test_splits]

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")


def check_source(source: str, *choices: str) -> None:
    """``ValueError`` unless ``source`` is one of ``choices``."""
    if source not in choices:
        raise ValueError(f"source must be {' or '.join(map(repr, choices))}, got {source!r}")


def file_splits(train: Any, val: Any, make: Callable[[Any, bool], Dataset], needs: str) -> dict[str, Dataset]:
    """Splits read from user files: ``make(train, True)`` trains, ``make(val, False)`` validates and tests;
    ``needs`` is the error when either is None."""
    if train is None or val is None:
        raise ValueError(needs)
    held = make(val, False)
    return {"train": make(train, True), "val": held, "test": held}


def holdout_splits(dataset: Dataset, num_held: int, what: str) -> dict[str, Dataset]:
    """Splits of one user folder: its last ``num_held`` items validate and test, the rest train (``what``
    names the folder in the error when too few are left)."""
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 < num_held < n:
        raise ValueError(f"{what} has {n} samples: need more than num_val = {num_held} (> 0) to hold out")
    held = Subset(dataset, range(n - num_held, n))
    return {"train": Subset(dataset, range(n - num_held)), "val": held, "test": held}


class TokenizerDataModule(L.LightningDataModule):
    """Unlabelled batches for training a tokenizer: ``train_set`` and named ``val_sets``, each reported
    on its own (validation and testing alike); evaluation batches are as large as training ones.

    Args:
        batch_size, num_workers, seed: as ``TaskDataModule``'s.
    """

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.val_sets: dict[str, Dataset] = {}

    @property
    def val_names(self) -> list[str]:
        """Names of the validation loaders, in order (the training task logs metrics under them)."""
        return list(self.val_sets)

    def train_dataloader(self) -> DataLoader:
        return split_loader(self.train_set, self.batch_size, None, True, self.seed, self.num_workers)

    def val_dataloader(self) -> list[DataLoader]:
        return [split_loader(data, self.batch_size, None, num_workers=self.num_workers,
                             eval_batch_size=self.batch_size) for data in self.val_sets.values()]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
