"""Table rows as tokens: a schema-aware tokenizer fitted on a DataFrame, CSV or Parquet file.

A row is (column tag, value) pairs: one tag id per column, then one or more ids from that column's own
block (``table_schema`` holds the codecs). Local ids: the ``C`` tags, then each column's block in schema
order. Bad input (columns that differ from the schema, an empty frame at fit time, values of the wrong
type, mixed-type or datetime/complex columns, infinite numbers) raises ``ValueError`` naming the column.
Handled instead: unseen categories encode to the column's ``<unk>`` (decoded as missing); an all-missing
column fits as categorical with no categories; zero rows encode to ``[0, L]`` ids and decode to an empty
frame of the schema's dtypes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from anytoken.tokenizers.base import SegmentGrammar, Tokenizer, register_tokenizer
from anytoken.tokenizers.table_schema import Column, NumericEncoding, column_from_dict, fit_column, pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def _need_pandas() -> None:
    if pd is None:
        raise ImportError("the table tokenizer needs pandas: pip install 'anytoken[data]'")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv`` or ``.parquet`` file into a DataFrame."""
    _need_pandas()
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: tables are read from {', '.join(TABLE_SUFFIXES)} files")
    if not path.is_file():
        raise FileNotFoundError(f"no table file at {path}")
    try:
        with warnings.catch_warnings():  # a row longer than the header: pandas warns and drops cells
            warnings.simplefilter("error", pd.errors.ParserWarning)
            if path.suffix.lower() != ".csv":
                return pd.read_parquet(path)
            return pd.read_csv(path, encoding="utf-8-sig", index_col=False)  # short rows: missing values
    except (ValueError, UnicodeDecodeError, OSError, pd.errors.ParserWarning) as err:  # ParserError too
        raise ValueError(f"{path}: not a readable table ({type(err).__name__}: {err})") from None


@register_tokenizer
class TableTokenizer(Tokenizer):
    """Rows of a fitted schema <-> ``[N, L]`` local ids; build one with ``TableTokenizer.fit``.

    Args:
        columns: the fitted column codecs as dicts (``Column.to_dict()``), in schema order.
    """

    name = "table"
    modality = "table"
    write_suffixes = TABLE_SUFFIXES

    def __init__(self, columns: list[dict[str, Any]]) -> None:
        _need_pandas()
        if not columns:
            raise ValueError("table: the schema needs at least one column")
        self.schema: list[Column] = [column_from_dict(c) for c in columns]
        names = [c.name for c in self.schema]
        if len(set(names)) != len(names):
            raise ValueError(f"table: column names must be unique, got {names}")
        self._index = {name: i for i, name in enumerate(names)}
        sizes = np.array([c.size for c in self.schema])
        self._offsets = len(names) + np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (C,) block starts
        self._value_len = np.array([c.value_len for c in self.schema])  # (C,)
        self._size = int(len(names) + sizes.sum())

    @classmethod
    def fit(
        cls, data: pd.DataFrame | str | Path, *, n_bins: int = 32,
        numeric: Mapping[str, NumericEncoding] | None = None, categorical: Sequence[str] = (),
        decimals: int = 2, max_digits: int = 6, min_frequency: int = 1,
    ) -> TableTokenizer:
        """Learn the schema, category vocabularies and numeric quantisations of a table.

        Args:
            data: a DataFrame, or the path of a ``.csv``/``.parquet`` file.
            n_bins: quantile bins per binned numeric column (fewer when it has fewer distinct values).
            numeric: column -> ``"quantile"`` or ``"digits"``, overriding the automatic choice (integer
                columns with more than ``n_bins`` distinct values below ``10**max_digits`` get digits).
            categorical: numeric columns to treat as categories (e.g. integer class labels).
            decimals: digits after the point of digit-encoded float columns.
            max_digits: the automatic choice digit-encodes integers only below ``10**max_digits``.
            min_frequency: rarer categories are left out and encode to ``<unk>``.
        """
        frame = data if pd is not None and isinstance(data, pd.DataFrame) else read_table(data)
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"table: cannot fit on an empty table (shape {frame.shape})")
        if n_bins < 1 or not 0 <= decimals <= 10 or max_digits < 1 or min_frequency < 1:
            raise ValueError("table: need n_bins, max_digits, min_frequency >= 1 and 0 <= decimals <= 10")
        numeric, categorical = dict(numeric or {}), list(categorical)
        _check_labels(frame)
        unknown = sorted((set(numeric) | set(categorical)) - set(frame.columns))
        if unknown or set(numeric) & set(categorical) or set(numeric.values()) - {"quantile", "digits"}:
            raise ValueError(
                "table: numeric/categorical overrides must name distinct columns of the table with encodings "
                f"'quantile' or 'digits' (unknown: {unknown}, numeric: {numeric}, categorical: {categorical})"
            )
        options = dict(n_bins=n_bins, decimals=decimals, max_digits=max_digits, min_frequency=min_frequency)
        return cls([
            fit_column(frame[c], categorical=c in categorical, encoding=numeric.get(c), **options).to_dict()
            for c in frame.columns
        ])

    @property
    def vocab_size(self) -> int:
        return self._size

    @property
    def columns(self) -> list[str]:
        """Column names in schema order."""
        return [c.name for c in self.schema]

    def column(self, name: str) -> Column:
        """The codec of column ``name``."""
        if name not in self._index:
            raise ValueError(f"table: unknown column {name!r}; the schema has {self.columns}")
        return self.schema[self._index[name]]

    def tag_id(self, name: str) -> int:
        """Local id of column ``name``'s tag."""
        self.column(name)
        return self._index[name]

    def value_ids(self, name: str) -> range:
        """Local ids of column ``name``'s value block."""
        i = self.tag_id(name)
        return range(int(self._offsets[i]), int(self._offsets[i]) + self.schema[i].size)

    def row_length(self, columns: Sequence[str] | None = None) -> int:
        """Ids per encoded row of ``columns`` (default all): one tag plus the value ids per column."""
        return sum(1 + self.column(c).value_len for c in (self.columns if columns is None else columns))

    def error_bounds(self) -> dict[str, float]:
        """Column -> largest decode error of a value inside the fitted range (0.0 for categorical columns)."""
        return {c.name: c.error_bound for c in self.schema}

    def config(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.schema]}

    def grammar(self, columns: Sequence[str] | None = None, rows: int | None = 1) -> SegmentGrammar:
        """Tag of each column then a value from its block, in ``columns`` order (default: the schema).

        The steps cycle once per row: ``rows`` rows exactly, or any number of whole rows when None. For one
        target column, ``grammar([name])`` restricts decoding to that column's values.
        """
        names = self.columns if columns is None else list(columns)
        if not names or len(set(names)) != len(names) or (rows is not None and rows < 1):
            raise ValueError(f"table: a grammar needs distinct columns and rows >= 1: {names}, rows={rows}")
        steps: list[tuple[tuple[int, int], ...]] = []
        for name in names:
            tag, offset = self.tag_id(name), int(self._offsets[self._index[name]])
            steps.append(((tag, tag + 1),))
            steps += [tuple((offset + lo, offset + hi) for lo, hi in s) for s in self.column(name).steps()]
        length = None if rows is None else rows * len(steps)
        return SegmentGrammar(tuple(steps), min_length=length or len(steps), max_length=length)

    def column_grammar(self, name: str) -> SegmentGrammar:
        """One (tag, value) pair of column ``name``: what a prediction of that column may decode to."""
        return self.grammar([name])

    def encode(
        self, x: pd.DataFrame, columns: Sequence[str] | None = None,
        order: Literal["fixed", "shuffle"] = "fixed", rng: np.random.Generator | None = None,
    ) -> torch.Tensor:
        """Rows -> ``[N, L]`` local ids.

        Args:
            x: the rows. Without ``columns`` its columns must be exactly the schema's (any order).
            columns: encode only these columns, in this order (other columns of ``x`` are ignored).
            order: ``"fixed"`` (``columns`` order) or ``"shuffle"`` (a random column order per row).
            rng: random generator for ``"shuffle"``.
        """
        names = self._check_frame(x, columns)
        if order not in ("fixed", "shuffle"):
            raise ValueError(f"table: order must be 'fixed' or 'shuffle', got {order!r}")
        chunks = []
        for name in names:
            i = self._index[name]
            values = self.schema[i].encode(x[name]) + self._offsets[i]  # (N, value_len)
            chunks += [np.full((len(x), 1), i, dtype=np.int64), values]
        ids = np.concatenate(chunks, axis=1)  # (N, L)
        if order == "shuffle":
            ids = self._shuffle(ids, names, rng or np.random.default_rng())
        return torch.from_numpy(ids)

    def _check_frame(self, x: Any, columns: Sequence[str] | None) -> list[str]:
        if not isinstance(x, pd.DataFrame):
            raise ValueError(f"table: encode expects a pandas DataFrame, got {type(x).__name__}")
        _check_labels(x)
        if columns is None:
            missing = [c for c in self.columns if c not in x.columns]
            extra = [c for c in x.columns if c not in self._index]
            if missing or extra:
                raise ValueError(
                    f"table: the frame's columns differ from the fitted schema (missing {missing}, not in "
                    f"the schema {extra}); select them with encode(frame, columns=[...]) or refit"
                )
            return self.columns
        names = list(columns)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"table: columns must be a non-empty list of distinct names, got {names}")
        for name in names:
            self.column(name)
        absent = [c for c in names if c not in x.columns]
        if absent:
            raise ValueError(f"table: the frame lacks the columns {absent} asked for")
        return names

    def _shuffle(self, ids: np.ndarray, names: list[str], rng: np.random.Generator) -> np.ndarray:
        """Reorder each row's (tag, value) chunks by a random permutation."""
        N, L = ids.shape
        lengths = [1 + self.column(n).value_len for n in names]
        chunk = np.repeat(np.arange(len(names)), lengths)  # (L,) chunk of each position
        rank = rng.random((N, len(names))).argsort(axis=1)  # (N, K) new place of each chunk
        order = (rank[:, chunk] * L + np.arange(L)).argsort(axis=1)  # (N, L)
        return np.take_along_axis(ids, order, axis=1)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> pd.DataFrame:
        """``[N, L]`` (or one row ``[L]``) local ids -> a DataFrame in schema order with the fitted dtypes.

        Rows may list their columns in any order (shuffled), but every row must hold the same columns.
        """
        ids = self.check_ids(ids)
        if ids.dim() == 1:
            ids = ids[None] if ids.numel() else ids.reshape(0, 0)  # no ids: no rows
        if ids.dim() != 2:
            raise ValueError(f"table: decode expects [N, L] or [L] ids, got shape {tuple(ids.shape)}")
        ids = ids.cpu().numpy()
        starts = self._locate(ids)  # (N, C): where each column's tag sits, -1 where absent
        present = np.flatnonzero(starts[0] >= 0) if len(ids) else range(len(self.schema))
        frame = {}
        for i in present:
            codec = self.schema[i]
            pos = starts[:, i, None] + 1 + np.arange(codec.value_len)  # (N, value_len)
            local = np.take_along_axis(ids, pos, axis=1) - self._offsets[i]  # (N, value_len)
            self._check_values(local, codec)
            frame[codec.name] = codec.decode(local)
        return pd.DataFrame(frame)

    def _locate(self, ids: np.ndarray) -> np.ndarray:
        """Walk each row chunk by chunk: ``[N, C]`` position of each column's tag, -1 where absent."""
        N, L = ids.shape
        C = len(self.schema)
        starts = np.full((N, C), -1, dtype=np.int64)
        pos = np.zeros(N, dtype=np.int64)
        while (pos < L).any():  # each pass reads one chunk per unfinished row: at most C passes
            rows = np.flatnonzero(pos < L)
            tags = ids[rows, pos[rows]]
            if (tags >= C).any():
                r = rows[tags >= C][0]
                raise ValueError(f"table: row {r} has id {ids[r, pos[r]]} at position {pos[r]}: not a tag")
            seen = starts[rows, tags] >= 0
            if seen.any():
                twice = self.columns[tags[seen][0]]
                raise ValueError(f"table: row {rows[seen][0]} lists column {twice!r} twice")
            starts[rows, tags] = pos[rows]
            pos[rows] += 1 + self._value_len[tags]
        if (pos > L).any():
            raise ValueError(f"table: row {np.flatnonzero(pos > L)[0]} ends inside a value (cut short)")
        differs = ((starts >= 0) != (starts[:1] >= 0)).any(axis=1)
        if differs.any():
            r = np.flatnonzero(differs)[0]
            have = lambda k: [self.columns[i] for i in np.flatnonzero(starts[k] >= 0)]  # noqa: E731
            raise ValueError(f"table: rows hold different columns (row 0: {have(0)}, row {r}: {have(r)})")
        return starts

    def _check_values(self, local: np.ndarray, codec: Column) -> None:
        """Raise unless every value id ``[N, value_len]`` lies in its position's allowed ids."""
        for j, step in enumerate(codec.steps()):
            ok = np.logical_or.reduce([(local[:, j] >= lo) & (local[:, j] < hi) for lo, hi in step])
            if not ok.all():
                r = int(np.flatnonzero(~ok)[0])
                offset = self._offsets[self._index[codec.name]]
                allowed = [(int(lo + offset), int(hi + offset)) for lo, hi in step]
                raise ValueError(
                    f"table: row {r}: id {int(local[r, j] + offset)} is not a value of column {codec.name!r} "
                    f"(value position {j} allows ids in {allowed})"
                )

    def reconstruction_error(self, x: pd.DataFrame) -> float:
        """Mean over columns of ``column_errors(x)``."""
        return float(np.mean(list(self.column_errors(x).values())))

    def column_errors(self, x: pd.DataFrame) -> dict[str, float]:
        """Column -> round-trip error of ``x``: the share of changed cells of a categorical column, the mean
        absolute error over the fitted range ``high - low`` of a numeric one (missing = missing)."""
        out = self.decode(self.encode(x))
        errors = {}
        for codec in self.schema:
            a, b = x[codec.name].reset_index(drop=True), out[codec.name]
            if codec.kind == "categorical":
                same = (a.isna() & b.isna()) | (a.astype(object) == b.astype(object)).fillna(False)
                errors[codec.name] = 1.0 - float(same.mean())
            else:
                va, vb = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
                span = codec.high - codec.low if codec.kind == "binned" else 10.0**codec.int_digits
                span = span if span > 0 else 1.0  # fitted value range, for scale-free errors
                diff = np.where(np.isnan(va) & np.isnan(vb), 0.0, np.abs(va - vb) / span)
                errors[codec.name] = float(np.nan_to_num(diff, nan=1.0).mean())
        return errors

    def read_media(self, path: Path) -> pd.DataFrame:
        """A ``.csv`` or ``.parquet`` file (``anytoken encode``)."""
        return read_table(path)

    def write_media(self, media: pd.DataFrame, path: Path) -> None:
        """Write decoded rows as ``.csv`` (default) or ``.parquet`` by the suffix of ``path``."""
        if Path(path).suffix.lower() in TABLE_SUFFIXES[1:]:
            media.to_parquet(path, index=False)
        else:
            media.to_csv(path, index=False)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{c.name}:{c.kind}" for c in self.schema)
        return f"TableTokenizer({len(self.schema)} columns [{kinds}], vocab_size={self.vocab_size})"


def _check_labels(frame: pd.DataFrame) -> None:
    """Column labels must be distinct strings (they become part of the saved schema)."""
    labels = list(frame.columns)
    bad = [c for c in labels if not isinstance(c, str)]
    if bad:
        raise ValueError(f"table: column names must be strings, got {bad[:5]}; use df.columns.astype(str)")
    if len(set(labels)) != len(labels):
        twice = sorted({c for c in labels if labels.count(c) > 1})
        raise ValueError(f"table: duplicate column names {twice}")
