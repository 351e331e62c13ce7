"""The plain trajectory CSV format: one row per observation, columns ``scene,agent,t,x,y``.

``scene`` and ``agent`` are names (any text), ``t`` a timestamp and ``x``, ``y`` a position; rows of one
(scene, agent) pair form a track and must come in strictly increasing ``t``. Other columns are ignored
on reading. Writing uses ``repr`` of floats, so ``read(write(tracks))`` gives back the same numbers.
A UTF-8 byte-order mark is accepted. ``SceneHeader`` is what motion ids leave out of one scene (names,
timing, start positions); ``anytoken encode`` stores it beside the ids so that ``decode`` restores the scene.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anytoken.atomic import atomic_path

COLUMNS = ("scene", "agent", "t", "x", "y")


@dataclass
class Track:
    """One agent's observations in one scene: timestamps ``t`` ``[T]`` and positions ``xy`` ``[T, 2]``."""

    scene: str
    agent: str
    t: np.ndarray
    xy: np.ndarray

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        self.xy = np.asarray(self.xy, dtype=np.float64)
        if self.t.ndim != 1 or self.xy.shape != (len(self.t), 2):
            raise ValueError(
                f"track {self.scene}/{self.agent}: t must be [T] and xy [T, 2], "
                f"got {self.t.shape}, {self.xy.shape}"
            )
        if not (np.isfinite(self.t).all() and np.isfinite(self.xy).all()):
            raise ValueError(f"track {self.scene}/{self.agent} holds NaN or infinite values")
        if len(self.t) > 1 and not bool((np.diff(self.t) > 0).all()):
            i = int(np.argmin(np.diff(self.t) > 0))
            raise ValueError(
                f"track {self.scene}/{self.agent}: timestamps must be strictly increasing, "
                f"got t={self.t[i]!r} then t={self.t[i + 1]!r}"
            )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Track)
            and (self.scene, self.agent) == (other.scene, other.agent)
            and np.array_equal(self.t, other.t)
            and np.array_equal(self.xy, other.xy)
        )


def read_trajectory_csv(path: str | Path) -> list[Track]:
    """Tracks of a ``scene,agent,t,x,y`` CSV file, in order of first appearance; ``ValueError`` for a
    missing column, a non-numeric or NaN value (naming the line) or timestamps not increasing in a track."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory CSV file at {path}")
    try:
        rows = _read_rows(path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    tracks = []
    for (scene, agent), values in rows.items():
        array = np.array(values)  # (T, 3)
        try:
            tracks.append(Track(scene, agent, array[:, 0], array[:, 1:]))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    return tracks


def _read_rows(path: Path) -> dict[tuple[str, str], list[tuple[float, float, float]]]:
    """``(scene, agent) -> [(t, x, y), ...]`` of a trajectory CSV, checked line by line."""
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: a trajectory CSV needs the columns {list(COLUMNS)}; missing {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                t, x, y = (float(row[c]) for c in ("t", "x", "y"))
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: t, x and y must be numbers, got {row}") from None
            if not all(map(math.isfinite, (t, x, y))):
                raise ValueError(f"{path}:{line}: t, x and y must be finite, got t={t}, x={x}, y={y}")
            rows.setdefault((row["scene"], row["agent"]), []).append((t, x, y))
    return rows


@dataclass
class SceneHeader:
    """One scene's names, uniform timing (``t0 + k * dt``) and agents' start positions ``[A][2]``."""

    scene: str
    agents: list[str]
    t0: float
    dt: float
    start: list[list[float]]

    @classmethod
    def from_dict(cls, data: Any, what: str = "scene header") -> SceneHeader:
        """Rebuild a header from ``asdict`` output, checking every field (``ValueError`` naming ``what``)."""
        fields = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != fields:
            raise ValueError(f"{what}: expected the keys {sorted(fields)}, got {data!r:.200}")
        agents, start = data["agents"], data["start"]
        ok = (
            isinstance(data["scene"], str) and isinstance(agents, list) and agents
            and all(isinstance(a, str) for a in agents)
            and isinstance(start, list) and len(start) == len(agents)
            and all(isinstance(p, list) and len(p) == 2 for p in start)
            and all(isinstance(v, int | float) and math.isfinite(v) for v in [data["t0"], data["dt"]])
            and all(isinstance(v, int | float) and math.isfinite(v) for p in start for v in p)
            and data["dt"] > 0
        )
        if not ok:
            raise ValueError(f"{what}: malformed scene header (scene, agents [names], t0, dt > 0, start "
                             f"[[x, y] per agent] expected), got {data!r:.200}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_trajectory_csv(path: str | Path, tracks: Sequence[Track]) -> None:
    """Write tracks as ``scene,agent,t,x,y`` rows (atomically)."""
    with atomic_path(path) as tmp:
        write_rows(tmp, tracks)


def write_rows(path: Path, tracks: Sequence[Track]) -> None:
    """Write tracks as ``scene,agent,t,x,y`` rows to ``path`` directly (the caller makes it atomic)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for track in tracks:
            for t, (x, y) in zip(track.t.tolist(), track.xy.tolist()):
                writer.writerow([track.scene, track.agent, repr(t), repr(x), repr(y)])


def scene_positions(tracks: Sequence[Track], uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stack the tracks of one scene, all on the same timestamps: ``(t [T], positions [A, T, 2])``;
    ``uniform`` also requires equally spaced timestamps (relative tolerance 1e-6), as motion tokens assume."""
    if not tracks:
        raise ValueError("scene_positions needs at least one track")
    t = tracks[0].t
    for track in tracks:
        if track.scene != tracks[0].scene:
            raise ValueError(f"tracks of several scenes given: {tracks[0].scene!r} and {track.scene!r}")
        if not np.array_equal(track.t, t):
            raise ValueError(
                f"scene {track.scene!r}: agent {track.agent!r} has other timestamps than {tracks[0].agent!r}"
            )
    if uniform and len(t) > 2:
        dt = np.diff(t)
        if np.abs(dt - dt.mean()).max() > 1e-6 * abs(dt.mean()):
            raise ValueError(
                f"scene {tracks[0].scene!r}: timestamps are not equally spaced "
                f"(steps {dt.min()} .. {dt.max()})"
            )
    return t, np.stack([track.xy for track in tracks])
