"""DataModule for trajectory forecasting: simulated scenes or a trajectory CSV, plus the motion tokenizer.

Every item is a window of ``history + horizon`` steps of ``num_agents`` agents. The history is encoded
from rest at its first positions (``TrajectoryTokenizer.encode``, time-major, agents inner): ``history - 1``
steps of tokens. The future (``horizon`` steps) either continues that closed loop (``future_start="window"``:
history + future decoded from the first positions give the window back within the tokenizer's bound) or
starts from the observed state, the last observed position and step (``"observed"``: decoded from there,
within the same bound; with acceleration actions a zero action is the constant-velocity continuation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anytoken.tasks.data.base import TaskDataModule, check_source, file_splits
from anytoken.tasks.data.synthetic.motion import MotionConfig, MotionDataset, Trajectories
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer
from anytoken.tokenizers.trajectory_csv import read_trajectory_csv, scene_positions


def csv_windows(path: str | Path, num_agents: int, length: int, stride: int) -> np.ndarray:
    """Windows ``[N, num_agents, length, 2]`` cut from a trajectory CSV every ``stride`` steps. A scene's
    agents must share equally spaced timestamps; they are taken in groups of ``num_agents`` (in file order;
    a last, incomplete group is dropped)."""
    tracks = read_trajectory_csv(path)
    windows = []
    for scene in dict.fromkeys(track.scene for track in tracks):
        _, positions = scene_positions([t for t in tracks if t.scene == scene], uniform=True)  # (A, T, 2)
        for g in range(0, positions.shape[0] - num_agents + 1, num_agents):
            group = positions[g : g + num_agents]
            windows += [group[:, s : s + length] for s in range(0, group.shape[1] - length + 1, stride)]
    if not windows:
        raise ValueError(f"{path}: no scene has {num_agents} agents over {length} shared time steps")
    return np.stack(windows)


class ForecastDataModule(TaskDataModule):
    """Multi-agent windows as batches for ``ForecastingModule``.

    Args:
        source: ``"motion"`` (built-in simulation) or ``"csv"`` (``scene,agent,t,x,y`` files).
        motion: simulation settings (source ``"motion"``).
        num_train: training scenes; ``num_val``/``num_test``/``num_heldout`` likewise (heldout: only
            turning and accelerating agents by default, see ``MotionConfig``).
        csv_train: training CSV (source ``"csv"``); ``csv_val`` is used for validation and testing.
        num_agents: agents per window (source ``"csv"``; the simulation's ``motion.num_agents`` otherwise).
        window_stride: steps between consecutive CSV windows.
        history: observed steps (>= 2).
        horizon: forecast steps (>= 1).
        num_bins: action bins per axis of the motion tokenizer.
        max_delta: half-range of the action grid, in position units per step.
        action: ``"velocity"`` or ``"acceleration"`` (Verlet) actions.
        future_start: ``"window"`` or ``"observed"`` (see above); the model reads it from
            ``vocab["forecast_start"]``.
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s.
    """

    TASK_TAGS = ("forecast",)

    def __init__(
        self,
        source: Literal["motion", "csv"] = "motion",
        motion: MotionConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 256,
        num_test: int = 1_000,
        num_heldout: int = 1_000,
        csv_train: str | None = None,
        csv_val: str | None = None,
        num_agents: int = 3,
        window_stride: int = 4,
        history: int = 8,
        horizon: int = 12,
        num_bins: int = 33,
        max_delta: float = 1.0,
        action: Literal["velocity", "acceleration"] = "velocity",
        future_start: Literal["window", "observed"] = "window",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        if history < 2 or horizon < 1:
            raise ValueError(f"need history >= 2 and horizon >= 1, got {history}, {horizon}")
        check_source(source, "motion", "csv")
        if future_start not in ("window", "observed"):
            raise ValueError(f"future_start must be 'window' or 'observed', got {future_start!r}")
        self.history, self.horizon, self.future_start = history, horizon, future_start
        length = history + horizon
        if source == "motion":
            config = motion or MotionConfig()
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
            self.splits = {s: MotionDataset(s, n, length, config) for s, n in sizes.items() if n > 0}
        else:
            def windows(path: str, _: bool) -> Trajectories:
                return Trajectories(csv_windows(path, num_agents, length, window_stride))

            self.splits = file_splits(csv_train, csv_val, windows, "source='csv' needs csv_train and csv_val")
        self.tokenizer = TrajectoryTokenizer(num_bins=num_bins, max_delta=max_delta, action=action)
        self.set_vocab({"trajectory": self.tokenizer}, forecast_start=future_start)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``history_ids [B, 2A(H-1)]``, ``future_ids [B, 2AF]``, ``positions [B, A, H+F, 2]``
        (float64), ``kinds [B, A]``, ``history`` H."""
        positions = torch.from_numpy(np.stack([item["positions"] for item in items]))  # (B, A, H+F, 2)
        B, A, T, _ = positions.shape
        H, flat = self.history, positions.reshape(B * A, T, 2)
        if self.future_start == "window":
            ids = self.scene_ids(self.tokenizer.encode(flat), B, A)  # (B, 2A(H+F-1))
            history, future = ids[:, : 2 * A * (H - 1)], ids[:, 2 * A * (H - 1):]
        else:
            history = self.scene_ids(self.tokenizer.encode(flat[:, :H]), B, A)  # (B, 2A(H-1))
            observed = MotionState.from_path(flat[:, :H])
            future = self.scene_ids(self.tokenizer.encode(flat[:, H:], observed), B, A)  # (B, 2AF)
        return {
            "history_ids": history,
            "future_ids": future,
            "positions": positions,
            "kinds": torch.from_numpy(np.stack([item["kinds"] for item in items])).long(),
            "history": self.history,
        }

    @staticmethod
    def scene_ids(ids: torch.Tensor, B: int, A: int) -> torch.Tensor:
        """Ids of ``B * A`` agents side by side (time-major) -> ``[B, 2AS]``, each scene time-major."""
        return ids.view(-1, B, A, 2).transpose(0, 1).reshape(B, -1)
