"""VQA benchmark: official VQA accuracy on the scenes test split and on the held-out split of unseen
(colour, shape) pairs, per question type, for both answer heads, each trained within a CPU time budget;
then the demos' latency (request to answer/caption through gradio_client on 127.0.0.1).

    python benchmarks/bench_vqa.py [--minutes 5] [--heads generate classify] [--threads 1]
    python benchmarks/bench_vqa.py --minutes 0 --steps 250 --init-from runs/caption_scenes/release ...
    python benchmarks/bench_vqa.py --minutes 0 --steps 1300 --heads generate --seed 1 \
        --config configs/vqa_scenes_from_captioner.yaml   # any config, any seed

Each head trains from its shipped config (configs/vqa_scenes.yaml, configs/vqa_scenes_classify.yaml;
``--set model.init_args.lr=0.003`` style overrides apply to both) for ``--minutes`` of wall-clock time:
a short probe measures seconds per step, ``max_steps`` is set so that the cosine schedule ends inside the
budget, and ``max_time`` stops the run at the budget regardless. Settings are chosen on ``val`` and
``heldout_val`` (128 scenes of unseen pairs, other contents than ``heldout``'s); ``test`` and ``heldout``
are read once. Prints a table and writes benchmarks/results/vqa.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import ScenesConfig, make_scenes
from anytoken.tasks.data.vqa import VQADataModule
from anytoken.tasks.vqa import VQAModule

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"generate": "configs/vqa_scenes.yaml", "classify": "configs/vqa_scenes_classify.yaml"}
TYPES = ("color", "shape", "count", "position", "yes/no")


def load_config(
    head: str, overrides: list[str], path: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(trainer, model, data) init arguments of a config (default the head's shipped one), with
    ``a.b.c=value`` overrides."""
    config = yaml.safe_load((ROOT / (path or CONFIGS[head])).read_text())
    config["model"]["init_args"]["head"] = head
    for item in overrides:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = config
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    data = dict(config["data"]["init_args"])
    data["scenes"] = ScenesConfig(**data.get("scenes", {}))
    return config["trainer"], dict(config["model"]["init_args"]), data


def probe_step_seconds(model: VQAModule, data: VQADataModule, steps: int = 6) -> float:
    """Seconds per training step (forward, backward, AdamW) measured on a throwaway copy of the model."""
    import copy

    probe = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    batches = iter(data.train_dataloader())
    times = []
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        loss = probe.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def train_and_test(
    head: str,
    minutes: float,
    overrides: list[str],
    workdir: Path,
    steps: int = 0,
    init_from: str | None = None,
    config: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    trainer_args, model_args, data_args = load_config(head, overrides, config)
    L.seed_everything(seed, verbose=False)
    data = VQADataModule(**({"num_heldout_val": 128} | data_args))  # unseen pairs to choose settings on
    model = VQAModule(data.vocab, **(model_args | {"init_from": init_from or model_args.get("init_from")}))
    budget = 60 * minutes
    step_s = float("nan") if steps else probe_step_seconds(model, data)
    steps = steps or max(20, int(0.9 * budget / step_s))  # the schedule ends inside the budget
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=steps,
        max_time={"seconds": int(budget)} if minutes > 0 else None,
        gradient_clip_val=trainer_args.get("gradient_clip_val"),
        val_check_interval=None, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(workdir),
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_s = time.perf_counter() - start
    questions = trainer.global_step * _questions_per_batch(data)
    evaluator = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=str(workdir))
    chosen_on = evaluator.validate(model, datamodule=data, verbose=False)  # val, heldout_val
    reported = evaluator.test(model, datamodule=data, verbose=False)  # test, heldout: read once
    metrics = {k: float(v) for loader in chosen_on + reported for k, v in loader.items() if "/acc" in k}
    release = model.export(workdir / f"vqa_{head}")
    return {
        "head": head, "config": config or CONFIGS[head], "seed": seed,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_seconds": train_s, "steps": trainer.global_step, "planned_steps": steps,
        "probe_seconds_per_step": step_s, "init_from": init_from,
        "images_seen": trainer.global_step * data.batch_size,
        "questions_seen": questions, "metrics": metrics, "release": str(release),
    }


def _questions_per_batch(data: VQADataModule) -> float:
    grouped = data.splits["train"]
    cap = grouped.max_questions or float("inf")
    return data.batch_size * sum(min(len(g), cap) for g in grouped.groups) / len(grouped.groups)


def demo_latency(name: str, ckpt: Path, requests: int, question: str | None) -> dict[str, Any]:
    """Seconds from request to answer through gradio_client, the app on 127.0.0.1."""
    from gradio_client import Client, handle_file

    from anytoken.cli import load_demo

    app = load_demo(name).build_app(ckpt=ckpt, num_examples=1)
    from demos.widgets import launch

    url = launch(app, block=False)
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    image = Path(tempfile.mkdtemp()) / "scene.png"
    make_scenes("test", 1)[0].render(64).save(image)
    args = [handle_file(str(image))] + ([question] if question else []) + ["greedy", 4, 1.0, 0, 1.0, 16]
    api = "/answer" if question else "/caption"
    times, outputs = [], []
    try:
        for _ in range(requests + 1):  # the first request warms up
            start = time.perf_counter()
            outputs.append(client.predict(*args, api_name=api)[1])
            times.append(time.perf_counter() - start)
    finally:
        app.close()
    times = sorted(times[1:])
    return {
        "demo": name, "ckpt": str(ckpt), "requests": requests, "median_ms": 1000 * statistics.median(times),
        "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))], "output": outputs[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per head (0: no limit)")
    parser.add_argument("--steps", type=int, default=0, help="fixed training steps instead of the budget")
    parser.add_argument("--init-from", help="start from this release (e.g. runs/caption_scenes/release)")
    parser.add_argument("--config", help="train from this config instead of the head's shipped one")
    parser.add_argument("--seed", type=int, default=0, help="seed_everything before building the model")
    parser.add_argument("--heads", nargs="+", default=["generate", "classify"], choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads while training (see README)")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. data.init_args.seed=1")
    parser.add_argument("--latency-requests", type=int, default=20, help="0 skips the demo latency")
    parser.add_argument("--caption-ckpt", default="runs/caption_scenes/release", help="the demo's captioner")
    parser.add_argument("--output", default="benchmarks/results/vqa.json")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="bench-vqa-"))
    runs = [train_and_test(head, args.minutes, args.set, workdir, args.steps, args.init_from, args.config,
                           args.seed) for head in args.heads]
    latency = []
    if args.latency_requests:
        torch.set_num_threads(2)  # the demo serves on both cores
        if (ROOT / args.caption_ckpt).exists():
            latency.append(demo_latency("captioning", ROOT / args.caption_ckpt, args.latency_requests, None))
        for run in runs:
            question = "what color is the circle?"
            row = demo_latency("vqa", Path(run["release"]), args.latency_requests, question)
            latency.append(row | {"head": run["head"]})
    report(runs, latency, args)
    result = {"minutes": args.minutes, "steps": args.steps, "init_from": args.init_from, "seed": args.seed,
              "train_threads": args.threads, "overrides": args.set,
              "cpu_count": os.cpu_count(), "torch": torch.__version__, "runs": runs, "demo_latency": latency}
    with atomic_path(ROOT / args.output) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {args.output}")


def report(runs: list[dict[str, Any]], latency: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nVQA on the scenes, {args.minutes:g} min CPU training per head ({args.threads} torch thread(s))")
    header = f"{'head':<9} {'split':<11} {'overall':>8} " + " ".join(f"{t:>8}" for t in TYPES)
    print(header + f" {'steps':>6} {'images':>7} {'questions':>9} {'train s':>8}")
    for run in runs:
        for split in ("val", "heldout_val", "test", "heldout"):
            m = {k.split("/")[1]: v for k, v in run["metrics"].items() if k.startswith(f"{split}/")}
            cells = " ".join(f"{m.get('acc_' + t.replace('/', '_'), float('nan')):>8.4f}" for t in TYPES)
            overall = m.get("acc", float("nan"))
            print(f"{run['head']:<9} {split:<11} {overall:>8.4f} {cells} {run['steps']:>6} "
                  f"{run['images_seen']:>7} {run['questions_seen']:>9.0f} {run['train_seconds']:>8.1f}")
    if latency:
        print("\nDemo latency, request to answer through gradio_client (2 torch threads)")
        for row in latency:
            print(f"  {row['demo']:<11} {row.get('head', ''):<9} median {row['median_ms']:7.1f} ms  "
                  f"p90 {row['p90_ms']:7.1f} ms  ({row['requests']} requests) -> {row['output']!r}")


if __name__ == "__main__":
    main()
