"""Table tasks (``anytoken.models.tables``) on ``{"rows": DataFrame}`` batches (``TableDataModule``): predict
one column from the others, or generate synthetic rows; training and their metrics. Their arguments are
the format's settings, ``num_examples`` (shown after testing) and ``TokenTaskModule``'s (no image encoder).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, gather, register_evaluation
from anytoken.tasks.metrics.tables import marginal_distance, prediction_metrics
from anytoken.tasks.module import TokenTaskModule


class TablePredictionModule(TokenTaskModule):
    """Predict ``target`` from the other columns (``TablePredictionFormat``); reports accuracy (classes) or
    RMSE/MAE (numbers)."""

    def __init__(
        self,
        *args: Any,
        target: str = "target",
        regression: Literal["mean", "mode", "head"] = "head",
        column_order: Literal["fixed", "shuffle"] = "fixed",
        numeric_inputs: Literal["ple", "ple_only", "bins"] = "ple_only",
        linear_term: bool = True,
        num_examples: int = 5,
        **kwargs: Any,
    ) -> None:
        fmt = {"kind": "table_prediction", "column_order": column_order, "target": target,
               "regression": regression, "numeric_inputs": numeric_inputs, "linear_term": linear_term}
        super().__init__(*args, num_examples=num_examples, formats={"table_prediction": fmt}, **kwargs)


class TableGenerationModule(TokenTaskModule):
    """Generate synthetic rows, unconditionally or conditioned on some columns (``TableGenerationFormat``).
    Use ``decoding.strategy: sample``: greedy decoding repeats one row."""

    def __init__(
        self,
        *args: Any,
        condition_prob: float = 0.5,
        condition_on: list[str] | None = None,
        num_synthetic: int = 512,
        column_order: Literal["fixed", "shuffle"] = "fixed",
        numeric_inputs: Literal["ple", "ple_only", "bins"] = "ple",
        num_examples: int = 5,
        **kwargs: Any,
    ) -> None:
        fmt = {"kind": "table_generation", "column_order": column_order, "condition_prob": condition_prob,
               "condition_on": condition_on, "num_synthetic": num_synthetic, "numeric_inputs": numeric_inputs}
        super().__init__(*args, num_examples=num_examples, formats={"table_generation": fmt}, **kwargs)


@register_evaluation
class TablePredictionEvaluation(Evaluation):
    """Accuracy of the predicted target (classes), or its RMSE and MAE (numbers)."""

    kind = "table_prediction"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One output per batch: the true target values and the predicted ones (Series, dtypes kept)."""
        rows = batch["rows"]
        return [{"truth": rows[self.fmt.target], "prediction": self.fmt.predict(model, rows)}]

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        truth, pred = (pd.concat(c, ignore_index=True) for c in gather(outputs, "truth", "prediction"))
        return prediction_metrics(truth, pred, self.fmt.is_classification)

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        pairs = list(zip(outputs[0]["truth"], outputs[0]["prediction"]))[: self.num_examples]
        return [f"Predicting {self.fmt.target!r}:"] + [f"  true {t!r:<24} predicted {p!r}" for t, p in pairs]

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return [{self.fmt.target: value} for value in self.fmt.predict(model, batch["rows"]).tolist()]


@register_evaluation
class TableGenerationEvaluation(Evaluation):
    """Per-column total variation distance between sampled and evaluated rows (``marginal_tvd``: the mean
    over the generated columns). Each batch samples one row per evaluated row, completing its
    ``condition_on`` columns, or ``num_synthetic`` unconditional rows (at least as many as it has)."""

    kind = "table_generation"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One output per batch: its rows (``real``) and the rows sampled beside them (``synthetic``)."""
        rows = batch["rows"]
        synthetic = self._sample(model, rows, max(len(rows), self.fmt.num_synthetic))
        return [{"real": rows, "synthetic": synthetic}]

    def _sample(self, model: AnytokenModel, rows: pd.DataFrame, num_rows: int) -> pd.DataFrame:
        """Rows completing the ``condition_on`` columns of ``rows``, or ``num_rows`` unconditional ones."""
        given = rows[self.fmt.condition_on] if self.fmt.condition_on else None
        return self.fmt.sample_rows(model, num_rows, given)

    def distances(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        """Column -> total variation distance of the generated columns over a split's outputs."""
        generated = [c for c in self.fmt.table.columns if c not in self.fmt.condition_on]
        real, synthetic = (pd.concat(c, ignore_index=True) for c in gather(outputs, "real", "synthetic"))
        return marginal_distance(real[generated], synthetic[generated])

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        return {"marginal_tvd": float(np.mean(list(self.distances(outputs).values())))}

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        lines = ["Per-column total variation distance, synthetic vs evaluated rows (0 = same distribution):"]
        lines += [f"  {name:<32} {d:.3f}" for name, d in self.distances(outputs).items()]
        with pd.option_context("display.width", 160, "display.max_columns", 12):
            for title, key in (("Synthetic rows:", "synthetic"), ("Evaluated rows:", "real")):
                lines += [title, outputs[0][key].head(self.num_examples).to_string()]
        return lines

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return self._sample(model, batch["rows"], len(batch["rows"])).to_dict(orient="records")
