"""Agent trajectories <-> motion tokens, MotionLM-style: per-step actions on a grid, integrated back.

Each step of positions ``[A, T, 2]`` becomes an action per axis on the grid ``[-max_delta, max_delta]``
of ``num_bins`` bins (width ``D``): the displacement (``action="velocity"``: ``p' = p + u``) or its
change (``"acceleration"``, MotionLM's Verlet actions: ``v' = v + a``, ``p' = p + v'``). Quantisation
runs closed-loop, each action taken from the *reconstructed* state, so errors never accumulate.

Bound: per axis and step, ``|p' - p| <= D / 2`` while each true action stays within ``max_action``
(``max_delta - D / 2`` for velocity, ``max_delta - 3 D / 2`` for acceleration). Why: the residual the
grid must represent is the true action plus the carried error (``e_t`` resp. ``2 e_t - e_{t-1}``, at most
``D / 2`` resp. ``3 D / 2`` by induction), so it lies on the grid. Larger actions saturate at the edge.

Local ids: ``[0, n)`` x-action bins, ``[n, 2n)`` y-action bins; time-major, agents inner:
``x_0^1 y_0^1 x_0^2 y_0^2 ... x_1^1 ...``. The motion starts from a ``MotionState``, by default at rest at
the first position (tokens then describe positions ``1 .. T-1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anytoken.tokenizers.base import Interval, SegmentGrammar, Tokenizer, register_tokenizer
from anytoken.tokenizers.binning import PlaneBins, UniformBins, check_finite, check_slots
from anytoken.tokenizers.trajectory_csv import (
    SceneHeader,
    Track,
    read_trajectory_csv,
    scene_positions,
    write_rows,
)


@dataclass(frozen=True)
class MotionState:
    """Where agents are and how far they moved in the last step: ``position``, ``velocity`` ``[A, 2]``."""

    position: torch.Tensor
    velocity: torch.Tensor

    def __post_init__(self) -> None:
        shape = self.position.shape
        if shape != self.velocity.shape or shape[-1:] != (2,) or len(shape) > 2:
            raise ValueError(
                f"MotionState needs position and velocity of shape [A, 2] (or [2]), got {tuple(shape)} and "
                f"{tuple(self.velocity.shape)}"
            )
        check_finite(self.position, "start position")
        check_finite(self.velocity, "start velocity")

    @classmethod
    def at_rest(cls, position: Any) -> MotionState:
        """Agents standing at ``position`` ``[A, 2]`` (or ``[2]``)."""
        position = torch.as_tensor(position, dtype=torch.float64)
        return cls(position, torch.zeros_like(position))

    @classmethod
    def from_path(cls, positions: Any) -> MotionState:
        """The state at the end of a path ``[..., T, 2]`` (T >= 2): its last point and last displacement."""
        positions = torch.as_tensor(positions, dtype=torch.float64)
        if positions.dim() < 2 or positions.shape[-2] < 2:
            raise ValueError(
                f"from_path needs at least 2 positions per agent, got shape {tuple(positions.shape)}"
            )
        return cls(positions[..., -1, :], positions[..., -1, :] - positions[..., -2, :])


@register_tokenizer
class TrajectoryTokenizer(Tokenizer):
    """Positions ``[T, 2]`` or ``[A, T, 2]`` <-> ``[2 * A * steps]`` local motion ids.

    Args:
        num_bins: bins per axis of the action grid (odd keeps "no change" exact).
        max_delta: half-range of the grid, in position units per step (velocity) or per step squared.
        action: ``"acceleration"`` (Verlet, MotionLM) or ``"velocity"``.
    """

    name = "trajectory"
    modality = "trajectory"
    write_suffixes = (".csv",)

    def __init__(
        self, num_bins: int = 33, max_delta: float = 1.0,
        action: Literal["velocity", "acceleration"] = "acceleration",
    ) -> None:
        if action not in ("velocity", "acceleration"):
            raise ValueError(f"action must be 'velocity' or 'acceleration', got {action!r}")
        if not isinstance(max_delta, int | float) or max_delta <= 0:
            raise ValueError(f"max_delta must be a positive number, got {max_delta!r}")
        self.bins = UniformBins(-float(max_delta), float(max_delta), num_bins)  # per axis
        self.plane = PlaneBins(self.bins, self.bins)
        self.action = action

    @property
    def vocab_size(self) -> int:
        return 2 * self.bins.num_bins

    @property
    def bin_intervals(self) -> tuple[Interval, ...]:
        """Local id intervals of ordered action bins (x, then y): where a Fourier head applies."""
        return self.plane.intervals

    @property
    def error_bound(self) -> float:
        """Worst-case round-trip error per axis (half a bin) while actions stay within ``max_action``."""
        return self.bins.width / 2

    @property
    def max_action(self) -> float:
        """Largest true action per axis for which ``error_bound`` is guaranteed."""
        return self.bins.hi - (0.5 if self.action == "velocity" else 1.5) * self.bins.width

    def grammar(self, num_agents: int = 1, num_steps: int | None = None) -> SegmentGrammar:
        """Whole steps of ``(x, y)`` action pairs: exactly ``num_steps`` steps of ``num_agents`` agents when
        ``num_steps`` is given, else any positive number of pairs."""
        if num_agents < 1 or (num_steps is not None and num_steps < 1):
            raise ValueError(f"need num_agents >= 1 and num_steps >= 1, got {num_agents}, {num_steps}")
        steps = tuple((interval,) for interval in self.bin_intervals)
        if num_steps is None:
            return SegmentGrammar(steps=steps, min_length=2 * num_agents)
        n = 2 * num_agents * num_steps
        return SegmentGrammar(steps=steps, min_length=n, max_length=n)

    def config(self) -> dict[str, Any]:
        return {"num_bins": self.bins.num_bins, "max_delta": self.bins.hi, "action": self.action}

    def encode(self, positions: Any, state: MotionState | None = None) -> torch.Tensor:
        """Positions -> motion ids, closed-loop.

        Args:
            positions: ``[T, 2]`` (one agent) or ``[A, T, 2]``, one row per step.
            state: where the motion starts; None: at rest at the first position, which is then not
                encoded (so T >= 2 is needed).

        Returns:
            ``[2 * A * S]`` long ids, time-major, with ``S = T - 1`` (no state) or ``T``.
        """
        x = _check_positions(positions)  # (A, T, 2)
        if state is None:
            if x.shape[1] < 2:
                raise ValueError(f"a trajectory needs at least 2 positions to encode, got {x.shape[1]}")
            state, x = MotionState.at_rest(x[:, 0]), x[:, 1:]
        pos, vel = self._start(state, x.shape[0])  # (A, 2) each
        ids = []
        for t in range(x.shape[1]):
            base = pos if self.action == "velocity" else pos + vel
            index = self.plane.ids(x[:, t] - base, outside="clip")  # (A, 2)
            step = self.plane.points(index, torch.float64)  # (A, 2)
            vel = step if self.action == "velocity" else vel + step
            pos = pos + vel
            ids.append(index)
        return torch.stack(ids).flatten()  # from (S, A, 2)

    def decode(
        self, ids: Any, state: MotionState | None = None, num_agents: int | None = None
    ) -> torch.Tensor:
        """Motion ids -> the path from the start state's position.

        Args:
            ids: ``[2 * A * S]`` local ids (time-major, agents inner).
            state: the start state; None: every agent at rest at the origin.
            num_agents: A; taken from ``state`` when given; None with no state means one agent.

        Returns:
            ``[S + 1, 2]`` (one agent given as ``[2]`` / no count) or ``[A, S + 1, 2]`` float64 positions.
        """
        ids = self.check_ids(ids)
        single = state.position.dim() == 1 if state is not None else num_agents is None
        A = state.position.reshape(-1, 2).shape[0] if state is not None else (num_agents or 1)
        if num_agents is not None and num_agents != A:
            raise ValueError(f"num_agents={num_agents} but the start state holds {A} agents")
        if ids.dim() != 1 or ids.numel() % (2 * A):
            raise ValueError(
                f"motion ids must be 1-D whole steps of {A} agent(s) x (x, y) = multiples of {2 * A} ids, "
                f"got shape {tuple(ids.shape)}"
            )
        steps = ids.view(-1, A, 2)  # (S, A, 2)
        check_slots(steps, self.plane.intervals, "motion ids alternate x and y bins")
        actions = self.plane.points(steps, torch.float64)  # (S, A, 2)
        state = state or MotionState.at_rest(torch.zeros(A, 2, dtype=torch.float64))
        pos, vel = self._start(state, A)
        vel = actions.cumsum(0) + vel if self.action == "acceleration" else actions  # (S, A, 2)
        path = torch.cat([pos[None], pos + vel.cumsum(0)]).transpose(0, 1)  # (A, S + 1, 2)
        return path[0] if single else path

    def within_bound(self, positions: Any, state: MotionState | None = None) -> bool:
        """Whether every true action of ``positions`` stays within ``max_action`` (so the bound holds)."""
        x = _check_positions(positions)
        if state is None:
            state, x = MotionState.at_rest(x[:, 0]), x[:, 1:]
        pos, vel = self._start(state, x.shape[0])
        prev = torch.cat([(pos - vel)[:, None], pos[:, None], x], dim=1)  # (A, T + 2, 2)
        step = prev.diff(dim=1)[:, 1:]  # (A, T, 2) displacements
        action = step if self.action == "velocity" else step.diff(dim=1, prepend=vel[:, None])
        return bool(action.abs().max() <= self.max_action + 1e-12) if action.numel() else True

    def reconstruction_error(self, x: Any) -> float:
        """Largest per-axis error of ``decode(encode(x))`` (from rest at the first point) against ``x``."""
        x = _check_positions(x)
        out = self.decode(self.encode(x), MotionState.at_rest(x[:, 0]))
        return float((out - x).abs().max())

    def _start(self, state: MotionState, num_agents: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = state.position.to(torch.float64).reshape(-1, 2)
        vel = state.velocity.to(torch.float64).reshape(-1, 2)
        if pos.shape[0] != num_agents:
            raise ValueError(f"the start state holds {pos.shape[0]} agents, the positions {num_agents}")
        return pos, vel

    def read_media(self, path: Path) -> torch.Tensor:
        """One scene's positions ``[A, T, 2]`` from a CSV file (all agents on the same uniform time steps)."""
        return torch.from_numpy(self._read_scene(path)[1])

    def _read_scene(self, path: Path) -> tuple[SceneHeader, np.ndarray]:
        tracks = read_trajectory_csv(path)
        scenes = sorted({track.scene for track in tracks})
        if len(scenes) != 1:
            raise ValueError(f"{path}: a trajectory file holds one scene here, "
                             f"found {len(scenes)}: {scenes[:5]}")
        t, positions = scene_positions(tracks, uniform=True)  # (T,), (A, T, 2)
        dt = float(t[1] - t[0]) if len(t) > 1 else 1.0
        header = SceneHeader(scenes[0], [tr.agent for tr in tracks], float(t[0]), dt,
                             positions[:, 0].tolist())
        return header, positions

    def encode_file(self, path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
        """A one-scene CSV -> (motion ids from rest at the first positions, the ``SceneHeader`` as a dict)."""
        header, positions = self._read_scene(Path(path))
        return self.encode(torch.from_numpy(positions)), header.to_dict()

    def decode_file(self, ids: torch.Tensor, path: str | Path, header: dict[str, Any] | None = None) -> None:
        """Motion ids -> a CSV of the scene ``header`` describes (without one: agent ``0`` from the origin,
        t = step index)."""
        scene = SceneHeader.from_dict(header) if header else SceneHeader("0", ["0"], 0.0, 1.0, [[0.0, 0.0]])
        start = torch.tensor(scene.start, dtype=torch.float64)  # (A, 2)
        x = self.decode(ids, MotionState.at_rest(start)).numpy()  # (A, S + 1, 2)
        t = scene.t0 + scene.dt * np.arange(x.shape[1], dtype=np.float64)
        self.save_media([Track(scene.scene, a, t, x[i]) for i, a in enumerate(scene.agents)], path)

    def write_media(self, media: Any, path: Path) -> None:
        """Write tracks, or positions ``[T, 2]`` / ``[A, T, 2]`` as scene ``0``, agents ``0..A-1``,
        t = step."""
        if isinstance(media, list) and all(isinstance(track, Track) for track in media):
            return write_rows(path, media)  # save_media made the write atomic already
        x = _check_positions(media).numpy()  # (A, T, 2)
        steps = np.arange(x.shape[1], dtype=np.float64)
        write_rows(path, [Track("0", str(a), steps, x[a]) for a in range(x.shape[0])])


def _check_positions(positions: Any) -> torch.Tensor:
    """``[T, 2]`` or ``[A, T, 2]`` finite positions -> float64 ``[A, T, 2]``."""
    x = torch.as_tensor(positions)
    if x.dim() not in (2, 3) or x.shape[-1] != 2:
        raise ValueError(f"positions must be [T, 2] or [A, T, 2], got shape {tuple(x.shape)}")
    if x.shape[-2] == 0 or x.shape[0] == 0:
        raise ValueError(f"a trajectory needs at least one position and one agent, got {tuple(x.shape)}")
    x = x.to(torch.float64)
    check_finite(x, "trajectory positions")
    return x if x.dim() == 3 else x[None]
