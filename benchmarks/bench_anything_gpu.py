"""configs/anything_gpu.yaml on a time budget: the config itself (every task, bf16-mixed, the 12-layer model),
with smaller training splits and ``trainer.max_time``, trained and then tested from the one run; every
task's test metrics and the training tokens/s side by side.

    anytoken fit --config configs/vq_image_scenes.yaml     # the image tokenizer the config reads
    anytoken fit --config configs/codec_speech16k.yaml     # the speech codec the config reads
    python benchmarks/bench_anything_gpu.py --max-time 00:00:04:00 --num-train 4000 --compile

Writes the derived config to ``--root``/config.yaml and the results to benchmarks/results/anything_gpu.json.
``--accelerator cpu --precision 32-true --tiny`` is a smoke run of the script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from anytoken.atomic import atomic_path
from anytoken.cli import from_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "anything_gpu.yaml"
TINY_BACKBONE = {"n_layer": 2, "n_head": 2, "d_model": 64, "max_seq_len": 1024}


class TokenRate(L.Callback):
    """Real (non-padding) training tokens and the wall time of the training loop."""

    def __init__(self) -> None:
        self.tokens, self.steps, self.seconds = 0.0, 0, 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.tokens += float(trainer.callback_metrics["train/tokens"])
        self.steps += 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self._start


def budget_config(args: argparse.Namespace) -> dict[str, Any]:
    """anything_gpu.yaml with the budget's splits, time limit and output folder."""
    config = yaml.safe_load(CONFIG.read_text())
    root = str(args.root)
    trainer = config["trainer"]
    trainer |= {"max_time": args.max_time, "limit_val_batches": 0, "default_root_dir": root, "logger": False,
                "accelerator": args.accelerator, "precision": args.precision, "callbacks": []}
    model = config["model"]["init_args"]
    model["compile"] = args.compile
    if args.tiny:
        model["backbone"] = TINY_BACKBONE
    for entry in config["data"]["init_args"]["tasks"].values():
        data = entry["data_args"]
        for key, limit in (("num_train", args.num_train), ("num_test", args.num_test),
                           ("num_heldout", args.num_test), ("num_val", 8)):
            if key in data:
                data[key] = min(data[key], limit)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-time", default="00:00:04:00", help="trainer.max_time (DD:HH:MM:SS)")
    parser.add_argument("--num-train", type=int, default=4000, help="training items per task, at most")
    parser.add_argument("--num-test", type=int, default=64, help="test/held-out items per task, at most")
    parser.add_argument("--compile", action="store_true", help="model.compile: torch.compile the backbone")
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer backbone (smoke runs)")
    parser.add_argument("--data-only", action="store_true",
                        help="build the data and exit: fills the speech cache where espeak-ng is installed")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "anything_gpu_budget")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anything_gpu.json"))
    args = parser.parse_args()
    config = budget_config(args)
    args.root.mkdir(parents=True, exist_ok=True)
    derived = args.root / "config.yaml"
    with atomic_path(derived) as tmp:
        Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False))
    cli = from_config(derived)
    if args.data_only:
        for stage in ("fit", "test"):
            cli.datamodule.setup(stage)
        return
    rate = TokenRate()
    cli.trainer.callbacks.append(rate)
    t = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule)
    test_seconds = time.perf_counter() - t
    metrics = {k: v for loader in tested for k, v in loader.items()}
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "precision": args.precision,
        "compile": args.compile,
        "parameters": sum(p.numel() for p in cli.model.model.backbone.parameters()),
        "num_train_per_task": args.num_train,
        "steps": rate.steps,
        "train_seconds": rate.seconds,
        "fit_seconds_with_data_setup": fit_seconds,
        "test_seconds": test_seconds,
        "train_tokens_per_s": rate.tokens / max(rate.seconds, 1e-9),
        "test": dict(sorted(metrics.items())),
    }
    print(json.dumps(result, indent=2))
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
