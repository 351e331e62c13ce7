"""Pose and trajectory tokenizers and their token tasks.

- ``tokenizers``: round-trip error against the bin size: pose (must stay within half a bin), motion tokens
  on simulated scenes and on traja's real 115-row track (the stated bound ``D / 2`` per axis), with
  encode throughput.
- ``pose``: pose estimation on stick figures, PCK@0.1 and OKS AP on held-out figures against a mean-pose
  baseline, plain softmax head vs Fourier head.
- ``forecast``: joint forecasting of simulated scenes, ADE/FDE (greedy), minADE/minFDE over 6 samples,
  against constant velocity on the test scenes and on the held-out scenes of turning and accelerating
  agents, plain vs Fourier head.

    python benchmarks/bench_pose_trajectory.py --part tokenizers   # ~1 s
    python benchmarks/bench_pose_trajectory.py --part pose         # ~9 min CPU (2 trainings of ~4.5 min)
    python benchmarks/bench_pose_trajectory.py --part forecast     # ~8 min CPU (2 trainings of ~3.5 min)
    python benchmarks/bench_pose_trajectory.py --part pose --heads lm   # one head: ~5 min CPU

Runs on one thread (tiny models thrash with several on a shared CPU). Prints tables and merges its part
into benchmarks/results/pose_trajectory.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from anytoken.atomic import atomic_path
from anytoken.backbone import TransformerConfig
from anytoken.tasks.data.forecasting import ForecastDataModule
from anytoken.tasks.data.pose import PoseDataModule
from anytoken.tasks.data.synthetic.motion import MotionConfig, MotionDataset
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig
from anytoken.tasks.forecasting import ForecastingModule
from anytoken.tasks.metrics.pose import oks_ap, pck
from anytoken.tasks.pose_estimation import PoseEstimationModule
from anytoken.tokenizers.image_encoder import ImageEncoderConfig
from anytoken.tokenizers.pose import PoseTokenizer
from anytoken.tokenizers.trajectory import MotionState, TrajectoryTokenizer

RESULTS = Path(__file__).parent / "results" / "pose_trajectory.json"


def bench_tokenizers() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    poses = torch.rand(5000, 17, 3, generator=g, dtype=torch.float64)
    poses[..., 2] = 2.0
    pose_rows = []
    for bins in (8, 16, 32, 64, 128, 256):
        tok = PoseTokenizer(num_bins=bins)
        t = time.perf_counter()
        ids = tok.encode(poses)
        speed = len(poses) / (time.perf_counter() - t)
        err = (tok.decode(ids)[..., :2].double() - poses[..., :2]).abs()
        pose_rows.append(
            {
                "num_bins": bins,
                "max_error": float(err.max()),
                "mean_error": float(err.mean()),
                "bound": 0.5 / bins,
                "within": bool(err.max() <= 0.5 / bins + 1e-6),
                "tokens_per_pose": tok.num_tokens,
                "poses_per_s": speed,
            }
        )
    scenes = torch.from_numpy(
        MotionDataset("test", 1000, 20, MotionConfig(num_agents=3)).positions
    )  # (N, 3, 20, 2)
    flat = scenes.reshape(-1, 20, 2)
    motion_rows = []
    for action in ("velocity", "acceleration"):
        for bins in (17, 33, 65):
            tok = TrajectoryTokenizer(num_bins=bins, max_delta=1.0, action=action)
            t = time.perf_counter()
            ids = tok.encode(flat)
            speed = flat.shape[0] * 19 / (time.perf_counter() - t)
            err = (tok.decode(ids, MotionState.at_rest(flat[:, 0])) - flat).abs().max()
            motion_rows.append(
                {
                    "data": "simulated",
                    "action": action,
                    "num_bins": bins,
                    "max_delta": 1.0,
                    "max_error": float(err),
                    "bound": tok.error_bound,
                    "within_grid": tok.within_bound(flat),
                    "steps_per_s": speed,
                }
            )
    track = _traja_track()
    if track is None:
        motion_rows.append({"data": "traja", "skipped": "traja is not installed (pip install traja)"})
    else:
        for action in ("velocity", "acceleration"):
            for bins in (33, 65, 129):
                tok = TrajectoryTokenizer(num_bins=bins, max_delta=8.0, action=action)
                motion_rows.append(
                    {
                        "data": "traja",
                        "action": action,
                        "num_bins": bins,
                        "max_delta": 8.0,
                        "max_error": tok.reconstruction_error(track),
                        "bound": tok.error_bound,
                        "within_grid": tok.within_bound(track),
                    }
                )
    print(f"\n{'pose bins':>9} {'max err':>9} {'bound':>9} {'mean err':>9} {'poses/s':>9}")
    for r in pose_rows:
        print(
            f"{r['num_bins']:>9} {r['max_error']:9.5f} {r['bound']:9.5f} {r['mean_error']:9.5f} "
            f"{r['poses_per_s']:9.0f}"
        )
    print(f"\n{'data':<10} {'action':<13} {'bins':>5} {'max err':>9} {'bound':>9} {'in grid':>8}")
    for r in motion_rows:
        if "skipped" in r:
            print(f"{r['data']:<10} skipped: {r['skipped']}")
            continue
        print(
            f"{r['data']:<10} {r['action']:<13} {r['num_bins']:>5} {r['max_error']:9.5f} {r['bound']:9.5f} "
            f"{str(r['within_grid']):>8}"
        )
    return {"pose": pose_rows, "trajectory": motion_rows}


def _traja_track() -> torch.Tensor | None:
    spec = importlib.util.find_spec("traja")
    if spec is None or not spec.submodule_search_locations:
        return None
    with open(Path(spec.submodule_search_locations[0]) / "tests" / "data" / "3527.csv", newline="") as f:
        return torch.tensor([[float(r["x"]), float(r["y"])] for r in csv.DictReader(f)], dtype=torch.float64)


def _fit(model: L.LightningModule, data: L.LightningDataModule, steps: int) -> float:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
    )
    start = time.process_time()
    trainer.fit(model, data)
    return time.process_time() - start


def bench_pose(steps: int, heads: list[str]) -> dict[str, Any]:
    L.seed_everything(0)
    data = PoseDataModule(
        num_train=steps * 32,
        num_val=0,
        num_test=500,
        num_bins=64,
        batch_size=32,
        figures=StickFiguresConfig(image_size=64),
        image_size=64,
    )
    # baseline: the mean training pose (normalised to the frame), predicted for every test figure
    train = data.collate([data.splits["train"][i] for i in range(2000)])
    mean = (train["keypoints"][..., :2] / 64).mean(0)  # (17, 2)
    test = [
        data.collate([data.splits["test"][i] for i in range(j, min(j + 64, 500))]) for j in range(0, 500, 64)
    ]
    gt, boxes, areas = (torch.cat([b[k] for b in test]) for k in ("keypoints", "boxes", "areas"))
    base = mean.expand(len(gt), -1, -1) * 64
    out: dict[str, Any] = {
        "baseline_mean_pose": {"pck@0.1": pck(base, gt, boxes), **oks_ap(base, gt, boxes, areas)},
        "steps": steps,
        "batch_size": 32,
        "test_figures": 500,
    }
    for head in heads:
        L.seed_everything(0)
        model = PoseEstimationModule(
            data.vocab,
            backbone=TransformerConfig(n_layer=3, n_head=4, d_model=128, max_seq_len=96),
            image_encoder=ImageEncoderConfig(source="cnn", image_size=64, cnn_width=32, cnn_grid=4),
            head=head,
            lr=2e-3,
            warmup_steps=50,
        )
        cpu = _fit(model, data, steps)
        model.eval()
        pred = torch.cat([model.model.predict_pose(b["images"], b["frames"]) for b in test])
        out[head] = {
            "pck@0.1": pck(pred, gt, boxes),
            **oks_ap(pred, gt, boxes, areas),
            "visibility_acc": float((pred[..., 2] == gt[..., 2]).float().mean()),
            "train_cpu_s": cpu,
        }
    print(f"\n{'pose (held-out figures)':<24} {'PCK@0.1':>8} {'AP':>7} {'AP50':>7} {'AP75':>7}")
    for name in ("baseline_mean_pose", *heads):
        r = out[name]
        print(f"{name:<24} {r['pck@0.1']:8.3f} {r['ap']:7.3f} {r['ap50']:7.3f} {r['ap75']:7.3f}")
    return out


def bench_forecast(steps: int, heads: list[str]) -> dict[str, Any]:
    L.seed_everything(0)
    data = ForecastDataModule(
        num_train=steps * 32,
        num_val=0,
        num_test=300,
        num_heldout=300,
        batch_size=32,
        history=8,
        horizon=12,
        num_bins=33,
        max_delta=1.0,
        action="velocity",
        motion=MotionConfig(num_agents=2),
    )
    out: dict[str, Any] = {
        "steps": steps,
        "batch_size": 32,
        "agents": 2,
        "history": 8,
        "horizon": 12,
        "samples": 6,
    }
    for head in heads:
        L.seed_everything(0)
        model = ForecastingModule(
            data.vocab,
            backbone=TransformerConfig(n_layer=3, n_head=4, d_model=96, max_seq_len=96),
            head=head,
            num_futures=6,
            lr=2e-3,
            warmup_steps=50,
        )
        cpu = _fit(model, data, steps)
        model.eval()
        out[head] = {"train_cpu_s": cpu}
        for split in ("test", "heldout"):
            evaluation = model.evaluations["forecast"]
            scores = [o for batch in data.loader(split) for o in evaluation.step(model.model, batch)]
            out[head][split] = evaluation.report(scores)
    print(f"\n{'forecast':<22} {'ADE':>6} {'FDE':>6} {'minADE':>7} {'minFDE':>7} {'CV ADE':>7} {'CV FDE':>7}")
    for head in heads:
        for split in ("test", "heldout"):
            m = out[head][split]
            print(
                f"{head + ' / ' + split:<22} {m['ade']:6.3f} {m['fde']:6.3f} "
                f"{m['min_ade']:7.3f} {m['min_fde']:7.3f} "
                f"{m['cv_ade']:7.3f} {m['cv_fde']:7.3f}"
            )
        for kind in ("turning", "accelerating"):
            m = out[head]["test"]
            print(
                f"{head + ' / test ' + kind[:5]:<22} {m['ade_' + kind]:6.3f} {m['fde_' + kind]:6.3f} "
                f"{m['min_ade_' + kind]:7.3f} {m['min_fde_' + kind]:7.3f} {m['cv_ade_' + kind]:7.3f} "
                f"{m['cv_fde_' + kind]:7.3f}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("tokenizers", "pose", "forecast", "all"), default="all")
    parser.add_argument("--pose-steps", type=int, default=600)
    parser.add_argument("--forecast-steps", type=int, default=700)
    parser.add_argument("--heads", nargs="+", default=["lm", "fourier"], choices=("lm", "fourier"))
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file the parts are merged into")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    parts = ("tokenizers", "pose", "forecast") if args.part == "all" else (args.part,)
    for part in parts:
        start = time.perf_counter()
        if part == "tokenizers":
            results[part] = bench_tokenizers()
        elif part == "pose":
            results[part] = bench_pose(args.pose_steps, args.heads)
        else:
            results[part] = bench_forecast(args.forecast_steps, args.heads)
        results[part]["wall_s"] = time.perf_counter() - start
        print(f"[{part}: {results[part]['wall_s']:.0f} s wall]")
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}  # other parts' earlier runs
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(merged | results, indent=2, default=float))
    print(f"results merged into {args.out}")


if __name__ == "__main__":
    main()
