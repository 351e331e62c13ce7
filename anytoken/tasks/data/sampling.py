"""Which samples each process reads (``ShardSampler``) and where a training pass stands
(``ResumableLoader``, whose position Lightning keeps in checkpoints). docs/distributed.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


def process_shard() -> tuple[int, int]:
    """``(processes, rank)`` of the running ``torch.distributed`` group; ``(1, 0)`` without one. Lightning's
    DDP and FSDP are data-parallel over every process, so this is each process's share of the data."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ShardSampler(DistributedSampler):
    """The share of ``range(n)`` that process ``rank`` of ``processes`` reads.

    Training (``shuffle``): a permutation drawn from ``seed + epoch``, cut to a multiple of ``processes``
    and dealt round-robin, so every process gets as many indices, no two get the same one and together they
    cover the epoch (less at most ``processes - 1`` samples, different ones each epoch); W processes of batch
    B train per step on the samples one process of batch W*B would. One process reads the whole
    permutation. Evaluation: one contiguous block per process, nothing repeated, so outputs gathered
    process by process come in dataset order.

    A ``DistributedSampler``, so Lightning keeps it rather than adding its own; ``skip`` (set by
    ``ResumableLoader``) drops the first indices of the next pass only.
    """

    def __init__(self, n: int, shuffle: bool = False, seed: int = 0,
                 shard: tuple[int, int] | None = None) -> None:
        processes, rank = shard or process_shard()
        if 0 < n < processes:  # some process would read nothing while the others wait for it
            raise ValueError(f"{n} samples cannot be shared by {processes} processes: each needs one or more")
        super().__init__(range(n), num_replicas=processes, rank=rank, shuffle=shuffle, seed=seed)
        self.n, self.skip = n, 0

    def indices(self) -> list[int]:
        """This process's indices of the current epoch, in reading order."""
        processes, rank = self.num_replicas, self.rank
        if not self.shuffle:
            return list(range(rank * self.n // processes, (rank + 1) * self.n // processes))
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        return order[: self.n - self.n % processes][rank::processes].tolist()

    def __iter__(self) -> Iterator[int]:
        indices, self.skip = self.indices()[self.skip:], 0
        return iter(indices)

    def __len__(self) -> int:
        processes, rank = self.num_replicas, self.rank
        if self.shuffle:
            return self.n // processes
        return (rank + 1) * self.n // processes - rank * self.n // processes


class ResumableLoader(DataLoader):
    """A training DataLoader over a ``ShardSampler`` that Lightning checkpoints: ``state_dict`` holds the
    epoch of the pass in progress and the batches it has yielded; after ``load_state_dict``, the next pass of
    that epoch starts after them (skipped by index: nothing skipped is loaded). Batches are counted where
    they leave the loader, so worker prefetching does not move the position."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch, self.yielded = self._sampler_epoch(), 0
        self.resume: dict[str, int] | None = None

    def _sampler_epoch(self) -> int:
        """The sampler's epoch (0 when Lightning has swapped in a plain one, e.g. for ``overfit_batches``)."""
        return getattr(self.sampler, "epoch", 0)

    def __iter__(self) -> Iterator[Any]:
        # a generator: this runs at the first batch, after Lightning has set the sampler's epoch
        self.epoch, self.yielded = self._sampler_epoch(), 0
        if self.resume is not None and self.resume["epoch"] == self.epoch:
            if not isinstance(self.sampler, ShardSampler) or self.batch_size is None:
                raise ValueError(f"cannot resume mid-epoch with a {type(self.sampler).__name__}: "
                                 "a ResumableLoader skips batches through its ShardSampler")
            self.yielded = self.resume["batches"]
            self.sampler.skip = self.yielded * self.batch_size
        self.resume = None
        for batch in super().__iter__():
            self.yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The position: ``{"epoch": pass in progress, "batches": yielded in it}``."""
        return {"epoch": self.epoch, "batches": self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next pass of ``state["epoch"]`` after its first ``state["batches"]`` batches."""
        self.resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (as Lightning sets it on the sampler)."""
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
