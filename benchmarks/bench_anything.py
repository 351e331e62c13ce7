"""Any-to-any benchmarks on the tiny mixture of configs/anything_tiny.yaml (CPU, one thread).

(a) Training throughput with packing against padding: the same mixture batches, the same model, real
    (non-padding) tokens per second of forward + backward + AdamW step; padding both to the batch's longest
    sample (dynamic shapes) and to the context length (static shapes). Measured on two mixtures with the
    tiny config's model: the tiny config's five tasks, and every task of configs/anything_gpu.yaml (speech
    and text-to-image included; untrained stand-ins for its codec and image tokenizer give the same
    token counts).
(b) Each task's metric for the mixture model against a single-task model of the same architecture at the
    same training budget: the single-task model of task t trains on exactly as many task-t batches as the
    mixture drew for t (same batch sizes, same task batches per step), so the mixture's total budget is
    the sum of the single-task budgets. Single-task models are one-task mixtures: same template, code,
    optimiser and schedule; only the sharing differs.

    python benchmarks/bench_anything.py [--steps 120] [--throughput-steps 12]

Writes benchmarks/results/anything.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import yaml

from anytoken.atomic import atomic_path
from anytoken.tasks.data.mixture import MixtureDataModule
from anytoken.tasks.mixture import MixtureModule
from anytoken.tokenizers.sequence import IGNORE_INDEX, SequenceBatch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "anything_tiny.yaml"
FULL_CONFIG = ROOT / "configs" / "anything_gpu.yaml"  # every task that has landed, speech included
VQ_CONFIG = ROOT / "configs" / "vq_image_scenes.yaml"  # the image tokenizer anything_gpu.yaml reads
CODEC_CONFIG = ROOT / "configs" / "codec_speech16k.yaml"  # and its speech codec
MODES = ("packing", "padding", "padding_to_context")
FULL_NUM_TRAIN = 256  # items per task of the full mixture: enough for the timed batches, quick to speak
FULL_CONTEXT = 1024  # anything_gpu.yaml's max_seq_len: a spoken caption is ~600 flattened codec tokens
HEADLINE = {  # task -> (metric, higher is better)
    "vqa": ("acc", True), "caption": ("cider_d", True), "pose": ("pck@0.1", True),
    "forecast": ("ade", False), "table": ("accuracy", True),
}


def load_setup(
    num_train: int, num_val: int, config: Path = CONFIG
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(model args, data args, task entries)`` of a mixture config, with smaller data splits."""
    loaded = yaml.safe_load(config.read_text())
    model = loaded["model"]["init_args"]
    data = loaded["data"]["init_args"]
    tasks = data.pop("tasks")
    for entry in tasks.values():
        args = entry["data_args"]
        sizes = {"num_train": num_train, "num_val": num_val, "num_test": 8, "num_heldout": 0}
        args.update({k: v for k, v in sizes.items() if k in args})
    return model, data, tasks


def untrained_media_tokenizers(tasks: dict[str, Any], root: Path) -> dict[str, Any]:
    """``tasks`` with untrained stand-ins for the trained media tokenizers they read (the speech codec, the
    image VQ tokenizer): token counts, all that throughput depends on, do not depend on the weights."""
    from anytoken.tokenizers.image_vq import ImageVQTokenizer

    tasks = copy.deepcopy(tasks)
    codec = yaml.safe_load(CODEC_CONFIG.read_text())["model"]["init_args"]["tokenizer"]
    for entry in tasks.values():
        args = entry["data_args"]
        if "codec_path" in args:  # the codec configs/codec_speech16k.yaml trains, untrained
            args |= {"codec_path": None, "codec": codec, "cache_dir": None}
        if "image_tokenizer" in args and not Path(args["image_tokenizer"]).is_dir():
            path = root / "image_tokenizer"
            if not path.is_dir():  # the tokenizer configs/vq_image_scenes.yaml trains, untrained
                spec = yaml.safe_load(VQ_CONFIG.read_text())["model"]["init_args"]["tokenizer"]
                ImageVQTokenizer(**spec["config"]).save_pretrained(path)
            args["image_tokenizer"] = str(path)
    return tasks


def pad_to(seq: SequenceBatch, length: int, pad_id: int) -> SequenceBatch:
    """``seq`` right-padded to ``length`` positions (static shapes: every row as long as the context)."""
    extra = length - seq.input_ids.shape[1]
    fill = {"input_ids": pad_id, "targets": IGNORE_INDEX}
    return replace(seq, **{
        f.name: F.pad(getattr(seq, f.name), (0, extra), value=fill.get(f.name, 0))
        for f in fields(seq) if f.name != "embed_sources"
    })


def throughput(
    model_args: dict, data: MixtureDataModule, steps: int, modes: tuple[str, ...] = MODES
) -> dict[str, Any]:
    """Real tokens per second on the same pre-drawn mixture batches: packed rows, rows padded to the batch's
    longest sample, and rows padded to the context length (static shapes)."""
    stream = iter(data.train_dataloader())
    batches = [next(stream) for _ in range(steps + 2)]
    out = {}
    for mode in modes:
        torch.manual_seed(0)
        task = MixtureModule(data.vocab, **{**model_args, "packing": mode == "packing"})
        model = task.model
        opt = torch.optim.AdamW(task.parameters(), lr=1e-3)
        tokens = slots = rows = 0
        for i, batch in enumerate(batches):
            if i == 2:  # two warm-up steps
                start = time.perf_counter()
            seq, media = task.rows(batch)
            if mode == "padding_to_context":
                seq = pad_to(seq, model.backbone.config.max_seq_len, model.space.pad_id)
            loss = model.lm_loss(seq, model.hidden_states(seq, model.embed(seq, media)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                tokens += int((seq.sample_ids > 0).sum())
                slots += seq.sample_ids.numel()
                rows += seq.sample_ids.shape[0]
        seconds = time.perf_counter() - start
        out[mode] = {
            "tokens_per_s": tokens / seconds, "seconds": seconds, "real_tokens": tokens,
            "padding_fraction": 1 - tokens / slots, "rows_per_step": rows / steps,
        }
    packed = out["packing"]["tokens_per_s"]
    out["speedup"] = packed / out["padding"]["tokens_per_s"]
    if "padding_to_context" in out:
        out["speedup_vs_context_padding"] = packed / out["padding_to_context"]["tokens_per_s"]
    return out


def train(
    model_args: dict, data_args: dict, tasks: dict, steps: int, root: Path
) -> tuple[dict[str, float], Counter, float]:
    """Train a mixture of ``tasks`` for ``steps`` steps; ``(val metrics, task batches drawn, seconds)``."""
    L.seed_everything(0, verbose=False)
    data = MixtureDataModule(copy.deepcopy(tasks), **{**data_args, "steps_per_epoch": steps})
    model = MixtureModule(data.vocab, **{**model_args, "warmup_steps": min(60, steps // 5)})
    drawn = Counter(name for batch in data.train_dataloader() for name, _ in batch)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                        default_root_dir=root, gradient_clip_val=1.0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    metrics = trainer.validate(model, datamodule=data, verbose=False)
    return {k: float(v) for m in metrics for k, v in m.items()}, drawn, seconds


def compare(model_args: dict, data_args: dict, tasks: dict, steps: int, root: Path) -> dict[str, Any]:
    """The mixture and one single-task model per task at the same per-task budget, side by side."""
    mixed, drawn, seconds = train(model_args, data_args, tasks, steps, root / "mixture")
    per_step = data_args["tasks_per_step"]
    rows = {"mixture_steps": steps, "mixture_seconds": seconds, "tasks": {}}
    for name, entry in tasks.items():
        single_steps = max(1, round(drawn[name] / per_step))
        single, _, single_seconds = train(model_args, data_args, {name: entry}, single_steps, root / name)
        metric, higher = HEADLINE[name]
        key = f"val/{name}/{metric}"
        m, s = mixed.get(key), single.get(key)
        better = None if m is None or s is None or m == s else (m > s) == higher
        rows["tasks"][name] = {
            "metric": metric, "higher_is_better": higher, "mixture": m, "single": s,
            "mixture_loss": mixed.get(f"val/{name}/loss"), "single_loss": single.get(f"val/{name}/loss"),
            "task_batches": drawn[name], "single_steps": single_steps, "single_seconds": single_seconds,
            "sharing": "helps" if better else "hurts" if better is False else "same",
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="mixture training steps for (b)")
    parser.add_argument("--throughput-steps", type=int, default=12, help="timed steps per mode for (a)")
    parser.add_argument("--num-train", type=int, default=4000, help="training items per task")
    parser.add_argument("--num-val", type=int, default=32, help="validation items per task")
    parser.add_argument("--full-throughput-steps", type=int, default=4, help="(a) on the full mixture")
    parser.add_argument("--skip-compare", action="store_true", help="only (a), the throughput")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "anything.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model_args, data_args, tasks = load_setup(args.num_train, args.num_val)
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("tiny", CONFIG), ("full", FULL_CONFIG)):
            num_train = args.num_train if name == "tiny" else min(args.num_train, FULL_NUM_TRAIN)
            _, mix_args, mix_tasks = load_setup(num_train, args.num_val, path)
            mix_tasks = untrained_media_tokenizers(mix_tasks, Path(tmp))
            data = MixtureDataModule(mix_tasks, **mix_args)
            context = max(model_args["backbone"]["max_seq_len"], FULL_CONTEXT if name == "full" else 0)
            tiny_model = {**model_args, "backbone": {**model_args["backbone"], "max_seq_len": context}}
            if name == "tiny":
                speed = throughput(tiny_model, data, args.throughput_steps)
            else:  # rows of 1,024 tokens: static padding would take minutes per step on one core
                speed = throughput(tiny_model, data, args.full_throughput_steps, MODES[:2])
            speeds[name] = speed | {
                "config": str(path.relative_to(ROOT)), "tasks": list(mix_tasks),
                "tasks_per_step": mix_args["tasks_per_step"], "max_seq_len": context,
            }
    for name, speed in speeds.items():
        print(f"\n{speed['config']} ({len(speed['tasks'])} tasks), the tiny model, "
              f"context {speed['max_seq_len']}")
        print(f"{'mode':<18} {'tokens/s':>9} {'rows/step':>9} {'padding':>8}")
        for mode in (m for m in MODES if m in speed):
            r = speed[mode]
            print(f"{mode:<18} {r['tokens_per_s']:9.0f} {r['rows_per_step']:9.1f} "
                  f"{r['padding_fraction']:8.1%}")
        print(f"packing speedup: {speed['speedup']:.2f}x over padding to the longest sample", flush=True)
        if "speedup_vs_context_padding" in speed:
            print(f"  and {speed['speedup_vs_context_padding']:.2f}x over padding to the context")
    if args.skip_compare:
        return
    with tempfile.TemporaryDirectory() as tmp:
        shared = compare(model_args, data_args, tasks, args.steps, Path(tmp))
    header = f"{'task':<9} {'metric':<9} {'mixture':>8} {'single':>8} {'loss mix':>8} {'loss one':>8} sharing"
    print("\n" + header)
    for name, r in shared["tasks"].items():
        print(f"{name:<9} {r['metric']:<9} {r['mixture']:8.3f} {r['single']:8.3f} {r['mixture_loss']:8.3f} "
              f"{r['single_loss']:8.3f}  {r['sharing']}")
    result = {
        "command": "taskset -c 0 python benchmarks/bench_anything.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("out", "skip_compare")),
        "machine": f"{platform.processor() or platform.machine()}, 1 thread pinned to one core, shared host",
        "model": model_args["backbone"], "throughput": speeds, "mixture_vs_single": shared,
    }
    with atomic_path(args.out) as tmp_out:
        Path(tmp_out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
