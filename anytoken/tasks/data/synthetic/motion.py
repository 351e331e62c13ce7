"""Simulated multi-agent motion, sampled at a fixed step; deterministic by seed, one seed stream per split.

Agent kinds (``KINDS``): ``constant`` velocity; from an onset step on, ``turning`` (constant rate, left or
right), ``accelerating`` (up to a cap) or ``stopping``; ``interacting`` pursues another agent (turning
towards it at a limited rate) and slows down to keep its distance. Onsets fall anywhere in the first 60%
of the scene, so a change may start after the observed history: the future is genuinely uncertain, which
several sampled futures can cover. Speeds stay within ``max_speed_cap`` per step, so motion tokens of
``max_delta >= 1`` never saturate. ``heldout`` scenes hold only ``config.heldout_kinds`` agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

KINDS: tuple[str, ...] = ("constant", "turning", "accelerating", "stopping", "interacting")
SPLITS: tuple[str, ...] = ("train", "val", "test", "heldout")
Split = Literal["train", "val", "test", "heldout"]


@dataclass(frozen=True)
class MotionConfig:
    """Scene simulation settings (lengths in arbitrary units, time in steps)."""

    num_agents: int = 3  # agents per scene
    kinds: tuple[str, ...] = KINDS  # kinds of train/val/test agents, drawn uniformly
    heldout_kinds: tuple[str, ...] = ("turning", "accelerating")  # kinds of the heldout split's agents
    min_speed: float = 0.2  # initial speed per step, lower bound
    max_speed: float = 0.6  # ... upper bound
    max_speed_cap: float = 0.9  # no agent ever moves faster (accelerating agents stop growing here)
    turn_rate: tuple[float, float] = (0.05, 0.15)  # turning agents: radians per step
    acceleration: tuple[float, float] = (0.015, 0.04)  # accelerating agents: speed gain per step
    braking: tuple[float, float] = (0.03, 0.08)  # stopping agents: speed loss per step
    arena: float = 20.0  # agents start inside [0, arena]^2
    noise: float = 0.0  # std of Gaussian noise added to observed positions
    seed: int = 0  # base seed; each split derives its own stream

    def __post_init__(self) -> None:
        bad = [k for k in (*self.kinds, *self.heldout_kinds) if k not in KINDS]
        if bad or not self.kinds or not self.heldout_kinds:
            raise ValueError(
                f"kinds must be non-empty subsets of {list(KINDS)}, "
                f"got {list(self.kinds)}, {list(self.heldout_kinds)}"
            )
        if self.num_agents < 1:
            raise ValueError(f"num_agents must be >= 1, got {self.num_agents}")
        if not 0 < self.min_speed <= self.max_speed <= self.max_speed_cap:
            raise ValueError(
                f"need 0 < min_speed <= max_speed <= max_speed_cap, got {self.min_speed}, "
                f"{self.max_speed}, {self.max_speed_cap}"
            )
        if self.noise < 0 or self.arena <= 0:
            raise ValueError(f"need noise >= 0 and arena > 0, got {self.noise}, {self.arena}")


def simulate(
    rng: np.random.Generator, n: int, num_steps: int, kinds: tuple[str, ...], config: MotionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes: positions ``[n, A, num_steps, 2]`` float64 and kinds ``[n, A]`` (``KINDS`` indices)."""
    if num_steps < 2:
        raise ValueError(f"scenes need at least 2 steps, got {num_steps}")
    A = config.num_agents
    kind = np.array([KINDS.index(k) for k in kinds])[rng.integers(len(kinds), size=(n, A))]  # (n, A)
    pos = rng.uniform(0, config.arena, size=(n, A, 2))
    heading = rng.uniform(-np.pi, np.pi, size=(n, A))
    speed = rng.uniform(config.min_speed, config.max_speed, size=(n, A))
    onset = rng.integers(0, max(1, int(0.6 * num_steps)), size=(n, A))
    turn = rng.uniform(*config.turn_rate, size=(n, A)) * rng.choice([-1.0, 1.0], size=(n, A))
    accel = rng.uniform(*config.acceleration, size=(n, A))
    brake = rng.uniform(*config.braking, size=(n, A))
    target = (np.arange(A)[None, :] + rng.integers(1, max(A, 2), size=(n, A))) % A  # (n, A) another agent
    pursuer = (kind == KINDS.index("interacting")) & (A > 1)
    # pursuers start a few units from their target, so they interact within the scene
    offset = rng.uniform(3.0, 6.0, size=(n, A))[..., None] * _unit(rng.uniform(-np.pi, np.pi, size=(n, A)))
    start = np.take_along_axis(pos, target[..., None], axis=1) + offset
    pos = np.where(pursuer[..., None], start, pos)
    out = np.zeros((n, A, num_steps, 2))
    for t in range(num_steps):
        out[:, :, t] = pos
        active = t >= onset
        heading = heading + np.where((kind == KINDS.index("turning")) & active, turn, 0.0)
        speed = speed + np.where((kind == KINDS.index("accelerating")) & active, accel, 0.0)
        speed = speed - np.where((kind == KINDS.index("stopping")) & active, brake, 0.0)
        to_target = np.take_along_axis(pos, target[..., None], axis=1) - pos  # (n, A, 2)
        wanted = np.arctan2(to_target[..., 1], to_target[..., 0])
        steer = np.clip(np.angle(np.exp(1j * (wanted - heading))), -0.2, 0.2)
        heading = np.where(pursuer, heading + steer, heading)
        keep_distance = np.clip((np.linalg.norm(to_target, axis=-1) - 1.5) * 0.3, 0.0, None)
        speed = np.clip(np.where(pursuer, np.minimum(speed, keep_distance), speed), 0.0, config.max_speed_cap)
        pos = pos + speed[..., None] * _unit(heading)
    if config.noise > 0:
        out = out + rng.normal(0, config.noise, size=out.shape)
    return out, kind


def _unit(angle: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


class Trajectories(Dataset):
    """Items ``positions`` ``[A, T, 2]`` float64, ``kinds`` ``[A]`` (indices into ``KINDS``; -1 where
    ``kinds`` is None: unknown) and ``scene`` (the index as a string)."""

    def __init__(self, positions: np.ndarray, kinds: np.ndarray | None = None) -> None:
        self.positions = positions
        self.kinds = np.full(positions.shape[:2], -1) if kinds is None else kinds

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"positions": self.positions[index], "kinds": self.kinds[index], "scene": str(index)}


class MotionDataset(Trajectories):
    """``n`` simulated scenes of ``num_steps`` steps (simulated once, at construction)."""

    def __init__(self, split: Split, n: int, num_steps: int, config: MotionConfig | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.config = config or MotionConfig()
        rng = np.random.default_rng([self.config.seed, SPLITS.index(split)])
        kinds = self.config.heldout_kinds if split == "heldout" else self.config.kinds
        super().__init__(*simulate(rng, n, num_steps, kinds, self.config))
