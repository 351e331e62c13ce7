"""What a task module shares between its processes: evaluation outputs gathered from every process, and
every process's random state in checkpoints (so a resumed run draws what the uninterrupted one would).
docs/distributed.md."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist

K = TypeVar("K")


def _group_size() -> int:
    """Processes in the running ``torch.distributed`` group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_outputs(outputs: dict[K, list[Any]]) -> dict[K, list[Any]]:
    """Every process's outputs, merged key by key in rank order (one process: ``outputs`` itself). Each
    process reads one contiguous block of an evaluation split (``ShardSampler``), so the merged lists are
    in dataset order. A collective: every process calls it."""
    if _group_size() == 1:
        return outputs
    parts: list[dict[K, list[Any]] | None] = [None] * _group_size()
    dist.all_gather_object(parts, outputs)
    merged: dict[K, list[Any]] = {}
    for part in parts:
        for key, values in (part or {}).items():
            merged.setdefault(key, []).extend(values)
    return merged


def rng_states() -> list[dict[str, Any]]:
    """Every process's torch RNG states (CPU and CUDA: the only global generators training steps draw
    from), in rank order; tensors only, so checkpoints still load with ``weights_only=True``. A collective."""
    state = {"cpu": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []}
    if _group_size() == 1:
        return [state]
    states: list[dict[str, Any] | None] = [None] * _group_size()
    dist.all_gather_object(states, state)
    return [s for s in states if s is not None]


def set_rng_states(states: list[dict[str, Any]], rank: int) -> bool:
    """Restore process ``rank``'s states of ``rng_states()``; False (nothing restored) when they come from
    another number of processes."""
    if len(states) != _group_size():
        return False
    torch.set_rng_state(states[rank]["cpu"])
    if states[rank]["cuda"]:
        torch.cuda.set_rng_state_all(states[rank]["cuda"])
    return True
