"""Predict one column of a table from the others: classification (a categorical target) or regression.

A sample is ``<bos> <table_predict> <table> other columns </table> <table> target tag, value </table>``.
Prediction continues the prompt with one segment constrained by ``TableTokenizer.column_grammar(target)``:
the target's tag, then only values of the target column (the shared decoding code enforces it). For a
binned numeric target, ``regression="mean"`` instead reads the model's distribution over the bins and
predicts its mean (the representatives weighted by probability), which lowers squared error.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.tasks.table_generation import TableTaskModule
from anytoken.tokenizers.table_schema import BinnedColumn, restore


class TablePredictionModule(TableTaskModule):
    """Predict ``target`` from the other columns; reports accuracy (classes) or RMSE/MAE (numbers).

    Args:
        target: the column to predict (any column of the fitted table).
        regression: for a binned numeric target, ``"mean"`` (expected value under the model) or ``"mode"``
            (the most likely bin, by constrained decoding); digit-encoded targets are always decoded.
        All other arguments are those of ``TableTaskModule``.
    """

    task_tag = "table_predict"

    def __init__(
        self, *args: Any, target: str = "target", regression: Literal["mean", "mode"] = "mean", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if target not in self.table.columns:
            raise ValueError(f"target {target!r} is not a column of the table: {self.table.columns}")
        if len(self.table.columns) < 2:
            raise ValueError("prediction needs at least one column besides the target")
        if regression not in ("mean", "mode"):
            raise ValueError(f"regression must be 'mean' or 'mode', got {regression!r}")
        self.target, self.regression = target, regression
        self.features = [c for c in self.table.columns if c != target]
        self.is_classification = self.table.column(target).kind == "categorical"

    def columns_for(self, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        return self.features, [self.target]

    @torch.no_grad()
    def column_probs(self, rows: pd.DataFrame) -> torch.Tensor:
        """Probabilities ``[N, size]`` over the target's value block (categorical or binned targets).

        Block order: categorical ``<missing>, <unk>, categories...``; binned ``<missing>, bins...``.
        """
        codec = self.table.column(self.target)
        if codec.value_len != 1:
            raise ValueError(f"column_probs needs a one-token target, but {self.target!r} is {codec.kind}")
        seq = self.sequences({"rows": rows, "open_tag": True}, targets=False, padding_side="left")
        hidden = self.hidden_states(seq, {})[:, -1]  # (N, d): the position after the target's tag
        ids = torch.as_tensor(self.table.value_ids(self.target), device=hidden.device)
        ids = ids + self.space.range("table").start
        return self.lm_head(hidden).float()[:, ids].softmax(-1).cpu()  # (N, size)

    @torch.no_grad()
    def predict(self, rows: pd.DataFrame, decoding: DecodingConfig | None = None) -> pd.Series:
        """The target's predicted value for each row (the target column itself may be absent)."""
        codec = self.table.column(self.target)
        if isinstance(codec, BinnedColumn) and self.regression == "mean":
            probs = self.column_probs(rows)[:, 1:].double()  # (N, bins): <missing> left out
            values = (probs @ torch.tensor(codec.reps, dtype=torch.double)) / probs.sum(-1).clamp(min=1e-12)
            return restore(values.numpy(), np.zeros(len(rows), dtype=bool), codec.dtype).rename(self.target)
        return self.generate_columns(rows.reset_index(drop=True), self.features, decoding)[self.target]

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        rows = batch["rows"]
        self.log(f"{stage}/loss", self.loss(batch), batch_size=len(rows), sync_dist=True)
        self._collect(stage, (rows[self.target], self.predict(rows)))

    def _report(self, stage: str) -> dict[str, float]:
        outputs = self._outputs.pop(stage, [])
        if not outputs:
            return {}
        truth = pd.concat([t for t, _ in outputs], ignore_index=True)
        pred = pd.concat([p for _, p in outputs], ignore_index=True)
        metrics = prediction_metrics(truth, pred, self.is_classification)
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, rank_zero_only=True)
        return metrics

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report("val")
        self._outputs = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        examples = self._outputs.get("test", [])[:1]
        metrics = self._report("test")
        lines = ["", f"Predicting {self.target!r}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())]
        for truth, pred in examples:
            for t, p in list(zip(truth, pred))[: self.num_examples]:
                lines.append(f"  true {t!r:<24} predicted {p!r}")
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        return [{self.target: value} for value in self.predict(batch["rows"]).tolist()]


def prediction_metrics(truth: pd.Series, pred: pd.Series, classification: bool) -> dict[str, float]:
    """Accuracy for classes, RMSE and MAE for numbers, over the rows whose true value is known."""
    known = truth.notna().to_numpy()
    if not known.any():
        return {}
    if classification:
        same = truth.astype(object).to_numpy()[known] == pred.astype(object).to_numpy()[known]
        return {"accuracy": float(np.mean(same))}
    err = pred.to_numpy(dtype=float, na_value=np.nan)[known] - truth.to_numpy(dtype=float)[known]
    err = np.where(np.isnan(err), np.inf, err)  # a missing prediction counts as infinitely wrong
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
