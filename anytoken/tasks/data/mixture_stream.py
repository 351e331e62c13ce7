"""The mixture's training stream (``MixtureStream``): the same task schedule in every process, each task read
from this process's share of it, and a position Lightning checkpoints. docs/distributed.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from anytoken.tasks.data.sampling import ResumableLoader

Pairs = list[tuple[str, Any]]
_END = object()  # a task loader's pass has no batch left


class MixtureStream:
    """``steps`` training batches per epoch, each a list of ``(task, batch)`` pairs.

    Every step draws ``per_step`` tasks by weight from a generator seeded with ``seed + epoch``, so every
    process draws the same tasks at the same step (none waits on another's task). Each task's batch is the
    next of its endless loader: a ``ResumableLoader`` over this process's share of the task, whose every pass
    is a new epoch of its sampler (a new order). Lightning sets the epoch (through ``sampler.set_epoch``, as
    on a DataLoader) and checkpoints the position: the epoch, the steps yielded in it and each task loader's
    own position.

    Args:
        loaders: task name -> its training loader (``TaskDataModule.train_dataloader()``).
        weights: sampling weight of each task, in ``loaders`` order.
        per_step: task batches per step.
        steps: steps per epoch.
        seed: seed of the draws.
    """

    def __init__(self, loaders: dict[str, Any], weights: list[float], per_step: int, steps: int,
                 seed: int) -> None:
        for name, loader in loaders.items():
            if not isinstance(loader, ResumableLoader):
                raise ValueError(f"task {name!r}: a mixture reads split_loader's training loaders "
                                 f"(ResumableLoader), got {type(loader).__name__}")
            if len(loader) == 0:
                raise ValueError(f"task {name!r} has fewer training samples per process than one batch")
        self.loaders: dict[str, ResumableLoader] = loaders
        self.per_step, self.steps, self.seed = per_step, steps, seed
        self.weights = torch.tensor(weights, dtype=torch.double)
        self.iterators: dict[str, Iterator] = {}
        self.epoch = 0  # of the next pass (Lightning sets it)
        self.drawing, self.yielded = 0, 0  # the epoch of the pass in progress, steps it has yielded
        self.resume: dict[str, int] | None = None

    @property
    def sampler(self) -> MixtureStream:
        """Itself: Lightning calls ``sampler.set_epoch`` on every training loader at each epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _next(self, task: str) -> Any:
        """The next batch of ``task``: its pass goes on, or (first use, resumed, ended) a pass starts."""
        loader = self.loaders[task]
        while True:
            if task not in self.iterators:
                self.iterators[task] = iter(loader)
            batch = next(self.iterators[task], _END)
            if batch is not _END:
                return batch
            del self.iterators[task]  # the task's pass ended: the next one is a new epoch of its sampler
            loader.set_epoch(loader.epoch + 1)

    def __iter__(self) -> Iterator[Pairs]:
        # a generator: this runs at the first batch, after Lightning has set the epoch
        self.drawing, self.yielded = self.epoch, 0
        skip = self.resume["steps"] if self.resume is not None and self.resume["epoch"] == self.epoch else 0
        self.resume = None
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        names = list(self.loaders)
        for step in range(self.steps):
            drawn = torch.multinomial(self.weights, self.per_step, replacement=True, generator=generator)
            if step < skip:  # trained on before the checkpoint: only the draws move on
                continue
            pairs = [(names[i], self._next(names[i])) for i in sorted(drawn.tolist())]
            self.yielded = step + 1
            yield pairs

    def state_dict(self) -> dict[str, Any]:
        """The position: the epoch in progress, the steps yielded in it and each task loader's position."""
        tasks = {name: loader.state_dict() for name, loader in self.loaders.items()}
        return {"epoch": self.drawing, "steps": self.yielded, "tasks": tasks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next pass of its epoch starts after its steps, each task after its
        batches."""
        if set(state["tasks"]) != set(self.loaders):
            raise ValueError(f"the checkpoint's mixture has the tasks {sorted(state['tasks'])}, this one "
                             f"{sorted(self.loaders)}")
        for name, task_state in state["tasks"].items():
            self.loaders[name].set_epoch(int(task_state["epoch"]))
            self.loaders[name].load_state_dict(task_state)
        self.iterators = {}
        self.resume = {"epoch": int(state["epoch"]), "steps": int(state["steps"])}
