"""The README flow over several seeds: the quickstart captioner, then VQA grown from it, each run as a user
runs it (``anytoken fit`` then ``anytoken test``), their test metrics read back from the CSV logs. With
``--mixture``, the any-to-any mixture (``configs/anything_tiny.yaml``) instead, every task's test and held-out
metric kept.

    python benchmarks/bench_seeds.py [--seeds 0 1 2] [--skip-vqa] [--out benchmarks/results/seeds.json]
    python benchmarks/bench_seeds.py --mixture --out benchmarks/results/mixture_seeds.json

Prints one row per seed and the mean and spread, and writes JSON (after each seed). The runs go to
``runs/seeds/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from anytoken.atomic import atomic_path

ROOT = Path(__file__).resolve().parent.parent
CAPTION = "configs/caption_scenes.yaml"
VQA = "configs/vqa_scenes_from_captioner.yaml"
MIXTURE = "configs/anything_tiny.yaml"
CAPTION_KEYS = ("test/exact_match", "test/cider_d", "heldout/exact_match", "heldout/cider_d")
VQA_KEYS = ("test/acc", "heldout/acc", "test/acc_count", "test/acc_yes_no", "heldout/acc_shape")


def anytoken(*args: str) -> float:
    """Run the ``anytoken`` console script next to this Python; seconds it took."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "anytoken"), *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def last_metrics(log_dir: Path) -> dict[str, float]:
    """Every metric of the newest CSVLogger version under ``log_dir``, last value wins."""
    newest = max(log_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    metrics: dict[str, float] = {}
    with open(newest / "metrics.csv") as f:
        for row in csv.DictReader(f):
            metrics.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return metrics


def seeded_config(config: str, seed: int, root: str) -> str:
    """A copy of ``config`` whose run paths (``runs/NAME``) move under ``root``; its path."""
    text = (ROOT / config).read_text().replace("runs/", f"{root}/")
    path = ROOT / root / Path(config).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("seed_everything: 0", f"seed_everything: {seed}", 1))
    return str(path)


def fit_and_test(config: str, seed: int, root: str, keys: tuple[str, ...] | None) -> dict[str, float]:
    """``anytoken fit`` then ``anytoken test`` of ``config`` under ``root``; fit seconds and ``keys`` (None:
    every test and held-out metric)."""
    path = seeded_config(config, seed, root)
    run = f"{root}/{Path(config).stem}"
    fit_s = anytoken("fit", "--config", path)
    anytoken("test", "--config", path, f"--ckpt_path={run}/checkpoints/last.ckpt")
    metrics = last_metrics(ROOT / run / "logs")
    keys = keys or sorted(k for k in metrics if k.startswith(("test/", "heldout/")))
    return {f"{Path(config).stem}_fit_s": fit_s} | {k: metrics[k] for k in keys}


def run_seed(seed: int, vqa: bool, mixture: bool) -> dict[str, float]:
    """Fit and test the captioner (and VQA from it), or the mixture, with ``seed``; the figures of one row."""
    root = f"runs/seeds/{seed}"
    if mixture:
        return {"seed": seed} | fit_and_test(MIXTURE, seed, root, None)
    row = {"seed": seed} | fit_and_test(CAPTION, seed, root, CAPTION_KEYS)
    if vqa:
        row |= {f"vqa_{k}": v for k, v in fit_and_test(VQA, seed, root, VQA_KEYS).items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip-vqa", action="store_true")
    parser.add_argument("--mixture", action="store_true", help=f"run {MIXTURE} instead")
    parser.add_argument("--out", default="benchmarks/results/seeds.json")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, not args.skip_vqa, args.mixture))
        print(" ".join(f"{k}={v:.4g}" for k, v in rows[-1].items()), flush=True)
        write_summary(rows, ROOT / args.out)


def write_summary(rows: list[dict[str, float]], out: Path) -> None:
    """Print each figure's mean and spread over ``rows`` and write them, rows included, to ``out``."""
    keys = [k for k in rows[0] if k != "seed"]
    summary = {k: {"mean": statistics.mean(r[k] for r in rows),
                   "std": statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0} for k in keys}
    for k, s in summary.items():
        print(f"{k:<22} {s['mean']:.4f} +- {s['std']:.4f}")
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
