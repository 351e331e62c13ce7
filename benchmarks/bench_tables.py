"""Table benchmarks, side by side in one run: the token model (``TablePredictionModule``) against
scikit-learn baselines (logistic/linear regression, HistGradientBoosting) on the same train/test splits of
scikit-learn's bundled datasets, and the table tokenizer's encode/decode throughput and round-trip error.

    python benchmarks/bench_tables.py [--steps 300] [--seed 0]

Classification reports accuracy, regression RMSE (the token model predicts the mean over its target bins
and, for comparison, the most likely bin decoded under the column grammar). Prints a table and writes
benchmarks/results/tables.json. About 4 minutes on 2 shared CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from anytoken.atomic import atomic_path
from anytoken.backbone import TransformerConfig
from anytoken.tasks.data.tables import TableDataModule, load_bundled
from anytoken.tasks.metrics.tables import prediction_metrics
from anytoken.tasks.tables import TablePredictionModule
from anytoken.tokenizers.table import TableTokenizer

RESULTS = Path(__file__).parent / "results" / "tables.json"
# (dataset, target column): classification where the target is categorical, regression otherwise
TASKS = [
    ("iris", "target"),
    ("wine", "target"),
    ("breast_cancer", "target"),
    ("diabetes", "target"),
    ("iris", "petal length (cm)"),
]
TEST_FRACTION = 0.25
N_BINS = 8


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


def token_model(dm: TableDataModule, target: str, steps: int) -> tuple[dict[str, float], float]:
    """Train a small TablePredictionModule for ``steps`` steps; its test metric(s) and training seconds."""
    model = TablePredictionModule(
        dm.vocab, target=target, backbone=TransformerConfig(n_layer=2, n_head=4, d_model=64, max_seq_len=96,
                                                            dropout=0.1),
        mask="causal", lr=3e-3, warmup_steps=steps // 10,
    )
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, gradient_clip_val=1.0,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    seconds = time.perf_counter() - start
    model.eval()
    test = dm.splits["test"]
    truth = test[target]
    fmt = model.model.task_format("table_prediction")
    if fmt.is_classification:
        return {"token": prediction_metrics(truth, model.model.predict_rows(test), True)["accuracy"]}, seconds
    metrics = {"token": prediction_metrics(truth, model.model.predict_rows(test), False)["rmse"]}
    fmt.regression = "mode"
    metrics["token_mode"] = prediction_metrics(truth, model.model.predict_rows(test), False)["rmse"]
    return metrics, seconds


def throughput(frame: pd.DataFrame, repeats: int = 3) -> dict[str, float]:
    """Encode and decode rows per second (best of ``repeats``) and the round-trip error of ``frame``."""
    tok = TableTokenizer.fit(frame, n_bins=32)
    best_enc = best_dec = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        ids = tok.encode(frame)
        best_enc = min(best_enc, time.perf_counter() - t)
        t = time.perf_counter()
        tok.decode(ids)
        best_dec = min(best_dec, time.perf_counter() - t)
    return {"rows": len(frame), "columns": frame.shape[1], "tokens_per_row": tok.row_length(),
            "encode_rows_per_s": len(frame) / best_enc, "decode_rows_per_s": len(frame) / best_dec,
            "reconstruction_error": tok.reconstruction_error(frame)}


def mixed_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic table with every column kind and 5% missing values."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "float": rng.normal(size=n), "skewed": rng.lognormal(size=n), "int_many": rng.integers(0, 10**5, n),
        "int_few": rng.integers(0, 5, n), "city": rng.choice(["paris", "oslo", "lima", "rome"], n),
        "flag": rng.random(n) < 0.3,
    })
    frame["float"] = frame["float"].mask(rng.random(n) < 0.05)
    frame["city"] = frame["city"].mask(rng.random(n) < 0.05)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each token model")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file written")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is faster, above all on a shared CPU
    results: dict = {"settings": {"steps": args.steps, "seed": args.seed, "test_fraction": TEST_FRACTION,
                                  "n_bins": N_BINS, "backbone": "2 layers, d_model 64, dropout 0.1"},
                     "prediction": [], "throughput": {}}
    for dataset, target in TASKS:
        L.seed_everything(args.seed, verbose=False)
        dm = TableDataModule(dataset, val_fraction=0.0, test_fraction=TEST_FRACTION, n_bins=N_BINS,
                             batch_size=32, seed=args.seed)
        classification = dm.tokenizer.column(target).kind == "categorical"
        row = {"dataset": dataset, "target": target, "metric": "accuracy" if classification else "rmse",
               "train_rows": len(dm.splits["train"]), "test_rows": len(dm.splits["test"])}
        row |= baselines(dm.splits["train"], dm.splits["test"], target, classification)
        metrics, seconds = token_model(dm, target, args.steps)
        row |= metrics | {"token_train_s": seconds}
        results["prediction"].append(row)
        print(f"{dataset}/{target}: {row}", flush=True)
    for name, frame in {"mixed_100k": mixed_frame(100_000), "digits": load_bundled("digits"),
                        "breast_cancer": load_bundled("breast_cancer")}.items():
        results["throughput"][name] = throughput(frame)
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwritten to {args.out}")


def report(results: dict) -> None:
    print(f"\n{'dataset / target':<32} {'metric':<9} {'linear':>8} {'HGB':>8} {'token':>8} "
          f"{'token(mode)':>12} {'train s':>8}  token vs best baseline")
    for r in results["prediction"]:
        better = max if r["metric"] == "accuracy" else min
        best = better(r["linear"], r["hgb"])
        verdict = "wins" if better(r["token"], best) == r["token"] and r["token"] != best else (
            "ties" if r["token"] == best else "loses")
        mode = f"{r['token_mode']:.3f}" if "token_mode" in r else "-"
        name = f"{r['dataset']} / {r['target']}"
        print(f"{name:<32} {r['metric']:<9} {r['linear']:>8.3f} {r['hgb']:>8.3f} {r['token']:>8.3f} "
              f"{mode:>12} {r['token_train_s']:>8.0f}  {verdict}")
    print(f"\n{'table':<14} {'rows':>7} {'cols':>5} {'ids/row':>8} {'encode rows/s':>14} "
          f"{'decode rows/s':>14} {'round-trip err':>15}")
    for name, t in results["throughput"].items():
        print(f"{name:<14} {t['rows']:>7} {t['columns']:>5} {t['tokens_per_row']:>8} "
              f"{t['encode_rows_per_s']:>14,.0f} {t['decode_rows_per_s']:>14,.0f} "
              f"{t['reconstruction_error']:>15.4f}")


if __name__ == "__main__":
    main()
