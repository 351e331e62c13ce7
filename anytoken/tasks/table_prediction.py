"""Predict one column of a table from the others (``anytoken.models.tables.TablePredictionFormat``):
classification (a categorical target) or regression; training and its metrics."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, register_evaluation
from anytoken.tasks.metrics.tables import prediction_metrics
from anytoken.tasks.module import TokenTaskModule


class TablePredictionModule(TokenTaskModule):
    """Predict ``target`` from the other columns of ``{"rows": DataFrame}`` batches (``TableDataModule``);
    reports accuracy (classes) or RMSE/MAE (numbers).

    Arguments: ``TablePredictionFormat``'s settings, ``num_examples`` (predictions printed after testing)
    and ``TokenTaskModule``'s (no image encoder).
    """

    def __init__(
        self,
        *args: Any,
        target: str = "target",
        regression: Literal["mean", "mode"] = "mean",
        column_order: Literal["fixed", "shuffle"] = "fixed",
        num_examples: int = 5,
        **kwargs: Any,
    ) -> None:
        fmt = {"kind": "table_prediction", "column_order": column_order, "target": target,
               "regression": regression}
        super().__init__(*args, num_examples=num_examples, formats={"table_prediction": fmt}, **kwargs)


@register_evaluation
class TablePredictionEvaluation(Evaluation):
    """Accuracy of the predicted target (classes), or its RMSE and MAE (numbers)."""

    kind = "table_prediction"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """One output per batch: the true target values and the predicted ones (Series, dtypes kept)."""
        rows = batch["rows"]
        return [{"truth": rows[self.fmt.target], "prediction": self.fmt.predict(model, rows)}]

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        truth, pred = (pd.concat([o[k] for o in outputs], ignore_index=True) for k in ("truth", "prediction"))
        return prediction_metrics(truth, pred, self.fmt.is_classification)

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        pairs = list(zip(outputs[0]["truth"], outputs[0]["prediction"]))[: self.num_examples]
        return [f"Predicting {self.fmt.target!r}:"] + [f"  true {t!r:<24} predicted {p!r}" for t, p in pairs]

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return [{self.fmt.target: value} for value in self.fmt.predict(model, batch["rows"]).tolist()]
