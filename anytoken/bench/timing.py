"""Wall-clock timing of encode and decode, and the machine state the timings were taken in."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")
BUSY_LOAD = 1.5  # 1-minute load average above which throughput figures are to be rerun on a quiet machine


def best_of(fn: Callable[[], T], repeats: int) -> tuple[T, float]:
    """``(fn()'s first result, fastest of `repeats` calls in seconds)``."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    result, best = None, float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        result = out if i == 0 else result
    return result, best


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine() -> dict[str, Any]:
    """What throughput depends on: CPU count, torch threads, load average, versions."""
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
