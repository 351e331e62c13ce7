"""Tables for the table tasks: a DataFrame, a CSV/Parquet file or one of scikit-learn's bundled datasets
(iris, wine, breast_cancer, diabetes, digits: shipped inside scikit-learn, nothing downloads), split into
train/val/test by seed, with a ``TableTokenizer`` fitted on the training split.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from anytoken.tasks.data.base import TaskDataModule, split_loader
from anytoken.tokenizers.table import TABLE_SUFFIXES, TableTokenizer, read_table

BUNDLED = ("iris", "wine", "breast_cancer", "diabetes", "digits")


def load_bundled(name: str) -> pd.DataFrame:
    """One of scikit-learn's bundled datasets as a frame with its label or value in column ``"target"``.

    Class labels become strings (``"setosa"``, ``"malignant"``, ``"0"``...), so the classification datasets
    have a categorical target; diabetes keeps its unscaled features and numeric target.
    """
    import sklearn.datasets as datasets

    if name not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {name!r}; choose from {list(BUNDLED)}")
    if name == "diabetes":
        return datasets.load_diabetes(as_frame=True, scaled=False).frame
    data = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = data.frame.copy()
    labels = np.asarray(data.target_names).astype(str)
    frame["target"] = pd.Series(labels[data.target.to_numpy()], dtype="str")
    return frame


def load_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """A DataFrame as is, a bundled dataset by name, or a ``.csv``/``.parquet`` file by path."""
    if isinstance(source, pd.DataFrame):
        return source
    if str(source) in BUNDLED:
        return load_bundled(str(source))
    if Path(source).suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"table source {source!r}: give a bundled dataset {list(BUNDLED)} or a CSV/Parquet")
    return read_table(source)


def split_table(
    frame: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Shuffle rows by ``seed`` and cut them into train/val/test frames (index reset)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need val/test fractions >= 0 summing to < 1, got {val_fraction}, {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(frame))
    n_val, n_test = round(val_fraction * len(frame)), round(test_fraction * len(frame))
    cuts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    if len(cuts["train"]) == 0:
        raise ValueError(f"the table has {len(frame)} rows: none is left for training")
    return {split: frame.iloc[idx].reset_index(drop=True) for split, idx in cuts.items()}


class TableDataModule(TaskDataModule):
    """Rows of a table as batches ``{"rows": DataFrame}`` for the table tasks, plus the fitted tokenizer.

    ``splits`` holds the train/val/test frames; the loaders draw row indices and slice them.

    Args:
        source: a bundled dataset name (``iris``, ``wine``, ``breast_cancer``, ``diabetes``, ``digits``), a
            ``.csv``/``.parquet`` path, or a DataFrame (from Python).
        drop: columns to leave out (identifiers, free text).
        max_rows: keep only the first rows after shuffling (None: all).
        val_fraction: share of rows for validation; ``test_fraction`` likewise.
        n_bins: quantile bins per binned numeric column (see ``TableTokenizer.fit``).
        numeric: column -> ``"quantile"`` or ``"digits"``, overriding the automatic choice.
        categorical: numeric columns to treat as categories.
        decimals: digits after the point of digit-encoded float columns.
        min_frequency: rarer categories encode to ``<unk>``.
        tokenizer_path: load a saved ``TableTokenizer`` instead of fitting one on the training split.
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s (seed also splits the rows).
    """

    TASK_TAGS = ("table_predict", "table_generate")

    def __init__(
        self,
        source: str | pd.DataFrame = "iris",
        drop: list[str] | None = None,
        max_rows: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        n_bins: int = 32,
        numeric: dict[str, Literal["quantile", "digits"]] | None = None,
        categorical: list[str] | None = None,
        decimals: int = 2,
        min_frequency: int = 1,
        tokenizer_path: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        frame = load_table(source)
        unknown = sorted(set(drop or ()) - set(frame.columns))
        if unknown:
            raise ValueError(f"drop names columns the table lacks: {unknown} (it has {list(frame.columns)})")
        frame = frame.drop(columns=list(drop or ()))
        if max_rows is not None:
            frame = frame.iloc[np.random.default_rng(seed).permutation(len(frame))[:max_rows]]
        self.splits = split_table(frame, val_fraction, test_fraction, seed)
        if tokenizer_path is not None:
            self.tokenizer = TableTokenizer.from_pretrained(tokenizer_path)
        else:
            self.tokenizer = TableTokenizer.fit(self.splits["train"], n_bins=n_bins, numeric=numeric,
                                                categorical=categorical or (), decimals=decimals,
                                                min_frequency=min_frequency)
        self.set_vocab({"table": self.tokenizer})

    def collate(self, indices: Sequence[int], split: str = "train") -> dict[str, Any]:
        """Row indices of ``split`` -> ``{"rows": DataFrame}`` (index reset)."""
        return {"rows": self.splits[split].iloc[list(indices)].reset_index(drop=True)}

    def shard_record(self, index: int) -> dict[str, Any]:
        """Training row ``index`` as plain data, ``{"rows": [{column: value}]}`` (no DataFrames in shards)."""
        return {"rows": self.splits["train"].iloc[[index]].to_dict("records")}

    def shard_batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Stored rows -> ``{"rows": DataFrame}`` of the training split's columns and dtypes."""
        train = self.splits["train"]
        rows = pd.DataFrame([row for record in records for row in record["rows"]], columns=train.columns)
        return {"rows": rows.astype(train.dtypes.to_dict())}

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split``: it draws row indices, ``collate`` slices the split's frame."""
        n = len(self.splits[split])
        if n == 0:
            raise ValueError(f"the {split} split is empty; raise its fraction or the number of rows")
        collate = partial(self.collate, split=split)
        return split_loader(range(n), self.batch_size, collate, train, self.seed, self.num_workers)
