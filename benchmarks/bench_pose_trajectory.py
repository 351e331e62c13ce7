"""Pose estimation and forecasting, the token tasks over the pose and trajectory tokenizers (the tokenizers
themselves are measured by ``anytoken bench``: round-trip error against the stated bound, throughput).

- ``pose``: pose estimation on stick figures, PCK@0.1 and OKS AP on held-out figures against a mean-pose
  baseline, plain softmax head vs Fourier head.
- ``forecast``: joint forecasting of simulated scenes, ADE/FDE of the greedy and of the expected forecast
  (mean of 16 samples), minADE/minFDE over 6 samples, against constant velocity (and its own best of 6
  perturbed futures) on the validation scenes (which choose the point estimate), the test scenes and the
  held-out scenes of turning and accelerating agents, per agent kind, plain vs Fourier head.

    python benchmarks/bench_pose_trajectory.py --part pose         # ~9 min CPU (2 trainings of ~4.5 min)
    python benchmarks/bench_pose_trajectory.py --part forecast     # ~8 min CPU (2 trainings of ~3.5 min)
    python benchmarks/bench_pose_trajectory.py --part pose --heads lm   # one head: ~5 min CPU
    python benchmarks/bench_pose_trajectory.py --part forecast --heads lm --seed 1 --out forecast_seed1.json

Runs on one thread (tiny models thrash with several on a shared CPU). Prints tables and merges its part
into benchmarks/results/pose_trajectory.json.
"""

from __future__ import annotations

import argparse
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
from anytoken.tasks.data.synthetic.motion import KINDS, MotionConfig
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig
from anytoken.tasks.forecasting import ForecastingModule
from anytoken.tasks.metrics.pose import oks_ap, pck
from anytoken.tasks.pose_estimation import PoseEstimationModule
from anytoken.tokenizers.image_encoder import ImageEncoderConfig

RESULTS = Path(__file__).parent / "results" / "pose_trajectory.json"


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


def bench_forecast(steps: int, heads: list[str], action: str, future_start: str,
                   seed: int = 0) -> dict[str, Any]:
    """Train each head on the same scenes (seed 0), its model and sampling seeded by ``seed``; scores."""
    L.seed_everything(0)
    data = ForecastDataModule(
        num_train=steps * 32,
        num_val=300,
        num_test=300,
        num_heldout=300,
        batch_size=32,
        history=8,
        horizon=12,
        num_bins=33,
        max_delta=1.0,
        action=action,
        future_start=future_start,
        motion=MotionConfig(num_agents=2),
    )
    out: dict[str, Any] = {
        "steps": steps,
        "action": action,
        "future_start": future_start,
        "batch_size": 32,
        "agents": 2,
        "history": 8,
        "horizon": 12,
        "samples": 6,
        "mean_of": 16,
        "seed": seed,
    }
    for head in heads:
        L.seed_everything(seed)
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
        for split in ("val", "test", "heldout"):  # val chooses the point estimate; the others reported once
            evaluation = model.evaluations["forecast"]
            torch.manual_seed(seed)
            scores = [o for batch in data.loader(split) for o in evaluation.step(model.model, batch)]
            out[head][split] = evaluation.report(scores)
    names = ("ade", "fde", "mean_ade", "mean_fde", "min_ade", "min_fde", "cv_ade", "cv_fde", "cv_min_ade",
             "cv_min_fde")
    print(f"\n{'forecast':<28} " + " ".join(f"{n:>10}" for n in names))
    for head in heads:
        for split in ("val", "test", "heldout"):
            m = out[head][split]
            kinds = [k for k in KINDS if f"ade_{k}" in m]
            for label, suffix in [(split, "")] + [(f"{split} {k}", f"_{k}") for k in kinds]:
                print(f"{head + ' / ' + label:<28} " + " ".join(f"{m[n + suffix]:10.3f}" for n in names))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("pose", "forecast", "all"), default="all")
    parser.add_argument("--pose-steps", type=int, default=600)
    parser.add_argument("--forecast-steps", type=int, default=700)
    parser.add_argument("--heads", nargs="+", default=["lm", "fourier"], choices=("lm", "fourier"))
    parser.add_argument("--action", choices=("velocity", "acceleration"), default="acceleration",
                        help="forecast: motion token actions")
    parser.add_argument("--future-start", choices=("window", "observed"), default="observed",
                        help="forecast: where the future tokens start (see ForecastDataModule)")
    parser.add_argument("--seed", type=int, default=0, help="forecast: the training and sampling seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file the parts are merged into")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    parts = ("pose", "forecast") if args.part == "all" else (args.part,)
    for part in parts:
        start = time.perf_counter()
        if part == "pose":
            results[part] = bench_pose(args.pose_steps, args.heads)
        else:
            results[part] = bench_forecast(args.forecast_steps, args.heads, args.action, args.future_start,
                                           args.seed)
        results[part]["wall_s"] = time.perf_counter() - start
        print(f"[{part}: {results[part]['wall_s']:.0f} s wall]")
    merged = json.loads(args.out.read_text()) if args.out.is_file() else {}  # other parts' earlier runs
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(merged | results, indent=2, default=float))
    print(f"results merged into {args.out}")


if __name__ == "__main__":
    main()
