"""Table metrics: how close synthetic rows are to real ones, and how well a column is predicted."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anytoken.tokenizers.table_schema import is_number_column


def marginal_distance(real: pd.DataFrame, synthetic: pd.DataFrame, bins: int = 10) -> dict[str, float]:
    """Total variation distance between each column's distribution in ``real`` and in ``synthetic``.

    Numeric columns are compared over ``bins`` quantile bins of the real values, categorical ones over
    their values; missing is a value of its own. 0 means the same distribution, 1 disjoint ones.
    """
    out = {}
    for name in real.columns:
        a, b = real[name], synthetic[name]
        if is_number_column(a):
            x, y = (s.to_numpy(dtype=float, na_value=np.nan) for s in (a, b))
            finite = x[~np.isnan(x)]
            cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]) if finite.size else np.zeros(0)
            a, b = (pd.Series(np.where(np.isnan(v), -1, np.searchsorted(cuts, v, "right"))) for v in (x, y))
        else:
            a, b = (s.astype(object).where(s.notna(), "<missing>") for s in (a, b))
        pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
        out[name] = 0.5 * float(pa.sub(pb, fill_value=0.0).abs().sum())
    return out


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
