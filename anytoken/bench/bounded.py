"""Pose and trajectory benchmarks: the round trip's max and mean error against the tokenizer's stated bound
(half a bin), with encode and decode throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from anytoken.bench.media import MediaSet
from anytoken.bench.timing import best_of
from anytoken.tokenizers import MotionState, PoseTokenizer, TrajectoryTokenizer


def read_poses(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A COCO keypoints file's persons: keypoints ``[N, K, 3]`` and their images' frames ``[N, 4]``."""
    from anytoken.tasks.data.formats.coco_keypoints import read_coco_keypoints

    data = read_coco_keypoints(path)
    if not data.annotations:
        raise ValueError(f"{path}: no person annotations")
    keypoints = np.stack([a["keypoints"] for a in data.annotations])
    frames = [[0.0, 0.0, data.images[int(a["image_id"])]["width"], data.images[int(a["image_id"])]["height"]]
              for a in data.annotations]
    return torch.from_numpy(keypoints), torch.tensor(frames, dtype=torch.float64)


def _errors(row: dict[str, Any], err: torch.Tensor, bound: tuple[float, float]) -> dict[str, Any]:
    """Max and mean of per-axis errors ``[M, 2]`` against the per-axis ``bound``."""
    limit = torch.tensor(bound, dtype=err.dtype)
    return row | {"max_error": float(err.max()), "mean_error": float(err.mean()), "bound": max(bound),
                  "bound_per_axis": list(bound), "within_bound": bool((err <= limit + 1e-9).all())}


def bench_poses(tokenizer: PoseTokenizer, label: str, sets: list[MediaSet], repeats: int = 3) -> list[dict]:
    """Per set of COCO keypoints files: errors as fractions of the image frame, over labelled keypoints."""
    rows = []
    for media in sets:
        keypoints, frames = map(torch.cat, zip(*(read_poses(p) for p in media.files)))
        ids, encode_s = best_of(lambda: tokenizer.encode(keypoints, frames), repeats)
        out, decode_s = best_of(lambda: tokenizer.decode(ids, frames), repeats)
        labelled = keypoints[..., 2] > 0  # (N, K)
        err = ((out[..., :2].double() - keypoints[..., :2]).abs() / frames[:, None, 2:])[labelled]  # (M, 2)
        row = {"set": media.name, "system": label, "files": len(media.files), "items": len(keypoints),
               "tokens_per_item": ids.shape[-1], "encode_per_s": len(keypoints) / encode_s,
               "decode_per_s": len(keypoints) / decode_s}
        rows.append(_errors(row, err, tokenizer.error_bound))
    return rows


def bench_trajectories(
    tokenizer: TrajectoryTokenizer, label: str, sets: list[MediaSet], repeats: int = 3
) -> list[dict]:
    """Per set of trajectory CSV files (one scene each): per-axis errors of every step after the first
    position (where the motion starts at rest); the bound holds while actions stay within ``max_action``."""
    rows = []
    for media in sets:
        scenes = [tokenizer.read_media(p) for p in media.files]  # (A, T, 2) each
        ids, encode_s = best_of(lambda: [tokenizer.encode(x) for x in scenes], repeats)
        outs, decode_s = best_of(
            lambda: [tokenizer.decode(i, MotionState.at_rest(x[:, 0])) for i, x in zip(ids, scenes)], repeats
        )
        err = torch.cat([(o - x)[:, 1:].abs().reshape(-1, 2) for o, x in zip(outs, scenes)])  # (M, 2)
        in_grid = all(tokenizer.within_bound(x) for x in scenes)
        row = {"set": media.name, "system": label, "files": len(media.files), "items": len(err),
               "actions_within_max_action": in_grid, "encode_per_s": len(err) / encode_s,
               "decode_per_s": len(err) / decode_s}
        if not in_grid:
            row["note"] = (f"some steps move more than max_action {tokenizer.max_action:.4g} per axis: "
                           "they saturate, and the bound holds only for the others")
        rows.append(_errors(row, err, (tokenizer.error_bound, tokenizer.error_bound)))
    return rows

