"""Table benchmarks, side by side in one run: the token model (``TablePredictionModule``) against
scikit-learn baselines (logistic/linear regression, HistGradientBoosting) on the same splits of
scikit-learn's bundled datasets over several split seeds. (The table tokenizer's round-trip error and
throughput are measured by ``anytoken bench``.)

    python benchmarks/bench_tables.py [--split val|test] [--seeds 0 1 2 3 4] [--ensemble 5] [--tasks ...]

Every split is 60% train / 15% validation / 25% test. Settings are chosen with ``--split val`` (every model
scored on the validation rows); ``--split test`` (the default) reports the test rows once. The token model
stops early on the validation loss (``--val-every``); classification reports accuracy, regression RMSE (the
token model's value head, and beside it the mean over its target bins and the most likely bin). With
``--ensemble K`` it is trained K times per split and their averaged prediction is scored beside the first
training's (and that of the first k, for each k < K). Prints each task's mean and spread beside the
baselines and writes benchmarks/results/tables.json plus one JSON per seed in benchmarks/results/tables/
(named after ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from anytoken.atomic import atomic_path
from anytoken.backbone import TransformerConfig
from anytoken.tasks.callbacks import RestoreBest
from anytoken.tasks.data.tables import TableDataModule
from anytoken.tasks.metrics.tables import prediction_metrics
from anytoken.tasks.tables import TablePredictionModule

RESULTS = Path(__file__).parent / "results" / "tables.json"
# (dataset, target column): classification where the target is categorical, regression otherwise
TASKS = [
    ("iris", "target"),
    ("wine", "target"),
    ("breast_cancer", "target"),
    ("diabetes", "target"),
    ("iris", "petal length (cm)"),
]
VAL_FRACTION, TEST_FRACTION = 0.15, 0.25
REGRESSIONS = ("mean", "mode", "head")  # the ways TablePredictionFormat predicts a binned number
MODELS = ("linear", "hgb", "token", "token_ensemble",
          *(f"token_{way}{many}" for way in REGRESSIONS for many in ("", "_ensemble")))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON at ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float))


def baselines(train: pd.DataFrame, test: pd.DataFrame, target: str, classification: bool) -> dict[str, float]:
    """Linear model and HistGradientBoosting on the same split (one-hot categories, scaled numbers)."""
    features = [c for c in train.columns if c != target]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
    encode = make_column_transformer(
        (StandardScaler(), numeric),
        (OneHotEncoder(handle_unknown="ignore"), [c for c in features if c not in numeric]),
    )
    models = {
        "linear": LogisticRegression(max_iter=5000) if classification else LinearRegression(),
        "hgb": HistGradientBoostingClassifier(random_state=0) if classification
        else HistGradientBoostingRegressor(random_state=0),
    }
    out = {}
    for name, model in models.items():
        pipe = make_pipeline(encode, model).fit(train[features], train[target])
        pred = pd.Series(pipe.predict(test[features]))
        metrics = prediction_metrics(test[target].reset_index(drop=True), pred, classification)
        out[name] = metrics["accuracy" if classification else "rmse"]
    return out


def train_token_model(dm: TableDataModule, target: str, args: argparse.Namespace) -> TablePredictionModule:
    """A small TablePredictionModule trained for at most ``args.steps`` steps (early stopping with
    ``args.val_every``: the weights of the lowest validation loss), in eval mode."""
    model = TablePredictionModule(
        dm.vocab, target=target, backbone=TransformerConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=96,
                                                            dropout=args.dropout),
        mask="causal", lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.steps // 10,
        numeric_inputs=args.numeric_inputs, regression=args.regression, column_order=args.column_order,
        linear_term=args.linear_term,
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=args.steps, logger=False, gradient_clip_val=1.0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[RestoreBest("val/loss")] if args.val_every else None,
        val_check_interval=args.val_every or None, check_val_every_n_epoch=None,
        limit_val_batches=1.0 if args.val_every else 0,
    )
    trainer.fit(model, datamodule=dm)
    return model.eval()


def averaged_prediction(models: list[TablePredictionModule], rows: pd.DataFrame) -> pd.Series:
    """The target predicted by several trainings at once: the most likely class of their mean
    probabilities, or the mean of their numbers."""
    fmt = models[0].model.task_format("table_prediction")
    if not fmt.is_classification:
        return pd.concat([m.model.predict_rows(rows) for m in models], axis=1).mean(axis=1)
    probs = torch.stack([m.model.task_format("table_prediction").column_probs(m.model, rows) for m in models])
    return fmt.most_likely(probs.mean(0))


def token_model(dm: TableDataModule, target: str, split: str,
                args: argparse.Namespace) -> tuple[dict, float]:
    """Train ``args.ensemble`` token models; score on ``split`` the first one (``token``) and, with several,
    their averaged prediction (``token_ensemble``; ``token_ensemble_sizes``: that of the first k, for each
    k from 2). A numeric target is also scored with each other way of predicting it from the same
    trainings (``token_<way>``, ``token_<way>_ensemble``, ...). Returns those and the training seconds."""
    start = time.perf_counter()
    models = [train_token_model(dm, target, args) for _ in range(args.ensemble)]
    seconds = time.perf_counter() - start
    rows, formats = dm.splits[split], [m.model.task_format("table_prediction") for m in models]
    fmt = formats[0]
    metric = "accuracy" if fmt.is_classification else "rmse"

    def score(pred: pd.Series) -> float:
        return prediction_metrics(rows[target].reset_index(drop=True), pred.reset_index(drop=True),
                                  fmt.is_classification)[metric]
    ways = [args.regression]
    if not fmt.is_classification:
        ways += [w for w in REGRESSIONS
                 if w != args.regression and (w != "head" or fmt.value_head is not None)]
    metrics: dict = {}
    for way in ways:
        for each in formats:
            each.regression = way
        name = "token" if way == args.regression else f"token_{way}"
        metrics[name] = score(models[0].model.predict_rows(rows))
        if len(models) > 1:
            sizes = {str(k): score(averaged_prediction(models[:k], rows)) for k in range(2, len(models) + 1)}
            metrics |= {f"{name}_ensemble": sizes[str(len(models))], f"{name}_ensemble_sizes": sizes}
    for each in formats:
        each.regression = args.regression
    return metrics, seconds


def prediction(args: argparse.Namespace) -> list[dict]:
    """Every task on every seed's split: the baselines and the token model scored on ``args.split``; one
    JSON per seed in the folder named as ``args.out`` without its suffix. Returns the rows (one per task and
    seed)."""
    rows = []
    for seed in args.seeds:
        seed_rows = []
        for dataset, target in tasks(args):
            L.seed_everything(seed, verbose=False)
            dm = TableDataModule(dataset, val_fraction=VAL_FRACTION, test_fraction=TEST_FRACTION,
                                 n_bins=args.n_bins, batch_size=32, seed=seed)
            classification = dm.tokenizer.column(target).kind == "categorical"
            row = {"dataset": dataset, "target": target, "seed": seed, "split": args.split,
                   "metric": "accuracy" if classification else "rmse",
                   "train_rows": len(dm.splits["train"]), "eval_rows": len(dm.splits[args.split])}
            row |= baselines(dm.splits["train"], dm.splits[args.split], target, classification)
            metrics, seconds = token_model(dm, target, args.split, args)
            row |= metrics | {"token_train_s": seconds}
            seed_rows.append(row)
            print(f"seed {seed} {dataset}/{target}: {row}", flush=True)
        write_json(args.out.parent / args.out.stem / f"{args.split}_seed{seed}.json",
                   {"settings": settings(args), "rows": seed_rows})
        rows += seed_rows
    return rows


def tasks(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (dataset, target) pairs of ``TASKS`` that ``args.tasks`` names (``dataset/target``; all: none)."""
    chosen = [t for t in TASKS if not args.tasks or "/".join(t) in args.tasks]
    unknown = set(args.tasks or []) - {"/".join(t) for t in TASKS}
    if unknown:
        raise SystemExit(f"unknown tasks {sorted(unknown)}; choose from {['/'.join(t) for t in TASKS]}")
    return chosen


def settings(args: argparse.Namespace) -> dict:
    """The run's settings, as recorded beside its figures."""
    return {"split": args.split, "seeds": args.seeds, "steps": args.steps, "n_bins": args.n_bins,
            "numeric_inputs": args.numeric_inputs, "regression": args.regression,
            "column_order": args.column_order, "linear_term": args.linear_term,
            "val_every": args.val_every, "ensemble": args.ensemble,
            "val_fraction": VAL_FRACTION, "test_fraction": TEST_FRACTION,
            "backbone": f"2 layers, d_model 64, dropout {args.dropout}, lr {args.lr}, "
                        f"weight decay {args.weight_decay}, batch 32"}


def mean_and_spread(values: list[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of ``values`` (the spread of one value: 0)."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summary(rows: list[dict]) -> list[dict]:
    """Per task: mean and standard deviation over seeds of every model's metric, and the token model's
    gap to the best baseline (accuracy points, or RMSE relative to the best baseline)."""
    out = []
    for dataset, target in dict.fromkeys((r["dataset"], r["target"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["target"]) == (dataset, target)]
        entry = {"dataset": dataset, "target": target, "metric": mine[0]["metric"], "seeds": len(mine)}
        for name in MODELS:
            values = [r[name] for r in mine if name in r]
            if values:
                entry[name] = mean_and_spread(values)
        for name in [m for m in MODELS if m.endswith("_ensemble")]:
            sizes = [r[f"{name}_sizes"] for r in mine if f"{name}_sizes" in r]
            if sizes:
                entry[f"{name}_sizes"] = {k: mean_and_spread([s[k] for s in sizes]) for k in sizes[0]}
        better = max if entry["metric"] == "accuracy" else min
        best = better(entry["linear"]["mean"], entry["hgb"]["mean"])
        for name in [m for m in MODELS if m.startswith("token") and m in entry]:
            token, tag = entry[name]["mean"], name.removeprefix("token")
            gap = (best - token) * 100 if entry["metric"] == "accuracy" else token / best - 1
            entry[f"gap{tag}"] = gap
            entry[f"goal_met{tag}"] = gap <= 1.0 if entry["metric"] == "accuracy" else gap <= 0.05
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of each token model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="split and training seeds")
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="rows every model is scored on")
    parser.add_argument("--n-bins", type=int, default=16, help="quantile bins per numeric column")
    parser.add_argument("--numeric-inputs", choices=("ple", "ple_only", "bins"), default="ple_only",
                        help="the token model's numeric input encoding")
    parser.add_argument("--regression", choices=REGRESSIONS, default="head",
                        help="how the token model predicts a numeric target (the others are scored too)")
    parser.add_argument("--linear-term", action=argparse.BooleanOptionalAction, default=True,
                        help="the value head adds a linear function of the standardised numeric features")
    parser.add_argument("--column-order", choices=("fixed", "shuffle"), default="fixed",
                        help="the feature order in training rows (shuffle: a random order per row)")
    parser.add_argument("--val-every", type=int, default=25,
                        help="validate every N steps and keep the weights of the lowest validation loss "
                             "(early stopping; 0: the last weights, no validation)")
    parser.add_argument("--ensemble", type=int, default=5,
                        help="token models trained per split; with several, their averaged prediction is "
                             "scored too (token_ensemble)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    parser.add_argument("--dropout", type=float, default=0.1, help="backbone dropout")
    parser.add_argument("--tasks", nargs="+", help="dataset/target pairs to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file written")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is faster, above all on a shared CPU
    rows = prediction(args)
    results: dict = {"settings": settings(args), "prediction": rows, "summary": summary(rows)}
    report(results)
    write_json(args.out, results)
    print(f"\nwritten to {args.out}")


def label(model: str, trained: str) -> str:
    """A token model's column title: ``token (way)`` for one training, ``ensemble (way)`` for several."""
    way = model.removeprefix("token").removesuffix("_ensemble").removeprefix("_") or trained
    return f"{'ensemble' if model.endswith('_ensemble') else 'token'} ({way})"


def report(results: dict) -> None:
    split = results["settings"]["split"]
    trained = results["settings"]["regression"]
    models = [m for m in MODELS if m != f"token_{trained}" and any(m in r for r in results["summary"])]
    names = [{"linear": "linear", "hgb": "HGB"}.get(m) or label(m, trained) for m in models]
    print(f"\n{'dataset / target':<32} {'metric':<9} " + " ".join(f"{n:>15}" for n in names)
          + f"  gap to best baseline ({split}, mean +- std over seeds)")
    for r in results["summary"]:
        cells = [f"{r[m]['mean']:.3f} +- {r[m]['std']:.3f}" if m in r else "-" for m in models]
        gaps = [(f"{r[f'gap{tag}']:+.1f} points" if r["metric"] == "accuracy" else f"{r[f'gap{tag}']:+.1%}")
                + f"{tag.replace('_', ' ')} ({'goal met' if r[f'goal_met{tag}'] else 'goal not met'})"
                for tag in (m.removeprefix("token") for m in models if m.startswith("token"))
                if f"gap{tag}" in r]
        name = f"{r['dataset']} / {r['target']}"
        print(f"{name:<32} {r['metric']:<9} " + " ".join(f"{c:>15}" for c in cells) + "  " + ", ".join(gaps))
    for r in results["summary"]:
        for name in [m for m in MODELS if f"{m}_sizes" in r]:
            sizes = [f"{k}: {v['mean']:.3f} +- {v['std']:.3f}" for k, v in r[f"{name}_sizes"].items()]
            print(f"{r['dataset']} / {r['target']}, {name.replace('_', ' ')} of the first k trainings: "
                  + ", ".join(sizes))


if __name__ == "__main__":
    main()
