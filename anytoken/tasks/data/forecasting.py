"""DataModule for trajectory forecasting: simulated scenes or a trajectory CSV, plus the motion tokenizer.

Every item is a window of ``history + horizon`` steps of ``num_agents`` agents. The whole window is
encoded once from rest at its first positions (``TrajectoryTokenizer.encode``, time-major, agents
inner); its first ``history - 1`` steps are the history tokens, the last ``horizon`` steps the future
tokens, so decoding history + future from the same start gives the window back within the tokenizer's
bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anytoken.tasks.data.base import TaskDataModule, check_source, file_splits
from anytoken.tasks.data.synthetic.motion import MotionConfig, MotionDataset, Trajectories
from anytoken.tokenizers.trajectory import TrajectoryTokenizer
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
        batch_size, num_workers, seed: as ``TaskDataModule``'s.
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
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        if history < 2 or horizon < 1:
            raise ValueError(f"need history >= 2 and horizon >= 1, got {history}, {horizon}")
        check_source(source, "motion", "csv")
        self.history, self.horizon = history, horizon
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
        self.set_vocab({"trajectory": self.tokenizer})

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``history_ids [B, 2A(H-1)]``, ``future_ids [B, 2AF]``, ``positions [B, A, H+F, 2]``
        (float64), ``kinds [B, A]``, ``history`` H."""
        positions = torch.from_numpy(np.stack([item["positions"] for item in items]))  # (B, A, H+F, 2)
        B, A, T, _ = positions.shape
        # one closed-loop pass over all agents of the batch, then back to per-scene time-major order
        ids = self.tokenizer.encode(positions.reshape(B * A, T, 2)).view(T - 1, B, A, 2)
        ids = ids.transpose(0, 1).reshape(B, -1)  # (B, 2A(H+F-1))
        split = 2 * A * (self.history - 1)
        return {
            "history_ids": ids[:, :split],
            "future_ids": ids[:, split:],
            "positions": positions,
            "kinds": torch.from_numpy(np.stack([item["kinds"] for item in items])).long(),
            "history": self.history,
        }
