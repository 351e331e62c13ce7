"""Column codecs of the table tokenizer: each turns one column's values into ``value_len`` ids per row
from its own block ``[0, size)`` (``TableTokenizer`` shifts the block into place). Categorical, binned
and digit columns: see each class. Numeric columns reject ``inf``: replace it with NaN (missing) first.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from anytoken.tokenizers.base import Interval

try:
    import pandas as pd
except ImportError:  # the optional "data" extra; TableTokenizer says so when it is used
    pd = None

NumericEncoding = Literal["quantile", "digits"]
MAX_DIGITS = 15  # float64 holds every integer below 10**15 exactly
# value type of a categorical column -> the pandas-inferred value types it accepts at encode time
ACCEPTS = {
    "str": {"string", "empty"},
    "bool": {"boolean", "empty"},
    "int": {"integer", "empty"},
    "float": {"floating", "integer", "mixed-integer-float", "empty"},
}
VALUE_TYPES = {
    "string": "str", "boolean": "bool", "integer": "int", "floating": "float", "mixed-integer-float": "float",
}


def nullable_int(dtype: str) -> str:
    """The pandas nullable dtype holding ``dtype``'s integers and missing values (``int32 -> Int32``)."""
    name = pd.api.types.pandas_dtype(dtype).name
    if name[:1] in "IU":
        return name  # already nullable
    return "UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:]


def restore(
    values: np.ndarray, missing: np.ndarray, dtype: str, categories: list | None = None, ordered: bool = False
) -> pd.Series:
    """A Series of the original ``dtype`` from decoded ``values`` ``[N]`` and a ``missing`` mask ``[N]``.

    Integer and bool dtypes cannot hold missing values: with any missing they become the nullable
    ``Int*``/``boolean`` dtypes.
    """
    if dtype == "category":
        values = np.where(missing, None, values)
        return pd.Series(pd.Categorical(values, categories=categories, ordered=ordered))
    target = pd.api.types.pandas_dtype(dtype)
    if target.kind in "iuf":
        numbers = np.where(missing, 0, values).astype(float)
        if target.kind == "f":
            return pd.Series(np.where(missing, np.nan, numbers)).astype(target)
        info = np.iinfo(np.dtype(getattr(target, "numpy_dtype", target)))
        numbers = np.clip(numbers, info.min, info.max)  # generated digits may exceed a narrow dtype
        if missing.any():
            return pd.Series(np.where(missing, np.nan, np.round(numbers))).astype(nullable_int(dtype))
        return pd.Series(np.round(numbers)).astype(target)
    if target.kind == "b" and missing.any():
        return pd.Series(np.where(missing, None, values), dtype=object).astype("boolean")
    return pd.Series(np.where(missing, None, values), dtype=object).astype(target)


def value_type(series: pd.Series) -> str:
    """pandas' inferred type of the non-missing values (``"string"``, ``"integer"``, ...)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    return pd.api.types.infer_dtype(series, skipna=True)


def is_number_column(series: pd.Series) -> bool:
    """Real numbers (ints, floats, their nullable forms); not bools, not complex numbers."""
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
                and not pd.api.types.is_complex_dtype(dtype))


def as_float(series: pd.Series, name: str) -> np.ndarray:
    """A numeric column's values as float64 ``[N]``, NaN where missing; rejects non-numbers and infinities."""
    if not is_number_column(series) and len(series):  # an empty column has no type to check (a 0-row CSV)
        raise ValueError(
            f"column {name!r} is numeric in the schema but has dtype {series.dtype}; "
            "convert it with pd.to_numeric (or refit with the column as categorical)"
        )
    values = series.to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(values).any():
        raise ValueError(
            f"column {name!r} holds {int(np.isinf(values).sum())} infinite value(s); replace them with NaN "
            "(missing) or a finite number first"
        )
    return values


class Column(abc.ABC):
    """One column's codec: ``value_len`` ids per row from a block of ``size`` ids."""

    kind: ClassVar[str]
    name: str
    dtype: str  # the original pandas dtype, restored by decode

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Ids in this column's block."""

    @property
    def value_len(self) -> int:
        """Ids per value."""
        return len(self.steps())

    def steps(self) -> list[tuple[Interval, ...]]:
        """The allowed ids of each value position, local to the block (default: one id of the block)."""
        return [((0, self.size),)]

    @abc.abstractmethod
    def encode(self, series: pd.Series) -> np.ndarray:
        """Values ``[N]`` -> local ids ``[N, value_len]`` (int64)."""

    @abc.abstractmethod
    def decode(self, ids: np.ndarray) -> pd.Series:
        """Local ids ``[N, value_len]`` (checked against ``steps``) -> values of the original dtype."""

    @property
    def error_bound(self) -> float:
        """Largest ``|decode(encode(v)) - v|`` for a numeric value inside the fitted range (0: lossless)."""
        return 0.0

    def _rounding(self, magnitude: float) -> float:
        """What storing a value of ``magnitude`` in the column's float dtype may add (float32 holds less)."""
        target = pd.api.types.pandas_dtype(self.dtype)
        if target.kind != "f":
            return 0.0
        return float(np.finfo(np.dtype(getattr(target, "numpy_dtype", target))).eps) * magnitude

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def _midpoints(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Cuts between neighbouring values; where the midpoint rounds down to ``lower`` (subnormal gaps), the
    cut sits at ``upper``, so that no bin is left empty."""
    mid = (lower + upper) / 2
    return np.where(mid > lower, mid, upper)


@dataclass
class CategoricalColumn(Column):
    """One id: 0 missing, 1 unknown (a category unseen at fit time or rarer than ``min_frequency``; it
    decodes as missing), ``2 + k`` the k-th category."""

    name: str
    dtype: str
    value_type: str  # "str", "bool", "int" or "float": the Python type of the categories
    categories: list
    ordered: bool = False  # an ordered pandas categorical

    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        if self.value_type not in ACCEPTS:
            raise ValueError(f"column {self.name!r}: value_type must be one of {sorted(ACCEPTS)}")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"column {self.name!r}: categories must be unique")

    @property
    def size(self) -> int:
        return 2 + len(self.categories)

    def encode(self, series: pd.Series) -> np.ndarray:
        found = value_type(series)
        if found not in ACCEPTS[self.value_type]:
            raise ValueError(
                f"column {self.name!r} was fitted on {self.value_type} categories but holds {found} values "
                f"(dtype {series.dtype})"
            )
        values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
        codes = pd.Index(self.categories, dtype=object).get_indexer(values.to_numpy(dtype=object))
        ids = np.where(codes >= 0, codes + 2, np.where(series.isna().to_numpy(), 0, 1))
        return ids.astype(np.int64)[:, None]

    def decode(self, ids: np.ndarray) -> pd.Series:
        table = np.array([None, None, *self.categories], dtype=object)
        return restore(table[ids[:, 0]], ids[:, 0] < 2, self.dtype, self.categories, self.ordered)


@dataclass
class BinnedColumn(Column):
    """One id: 0 missing, ``1 + b`` quantile bin ``b``, which covers ``[cuts[b-1], cuts[b])`` and decodes to
    its representative (the mean of the fitting values in it); values beyond the fit fall into end bins."""

    name: str
    dtype: str
    cuts: list[float]  # interior bin edges, increasing (len(reps) - 1 of them)
    reps: list[float]  # each bin's representative value
    low: float  # smallest fitting value
    high: float  # largest fitting value

    kind: ClassVar[str] = "binned"

    def __post_init__(self) -> None:
        if not self.reps or len(self.cuts) != len(self.reps) - 1 or np.any(np.diff(self.cuts) <= 0):
            raise ValueError(f"column {self.name!r}: need len(cuts) == len(reps) - 1 and increasing cuts")

    @classmethod
    def fit(cls, name: str, dtype: str, values: np.ndarray, n_bins: int) -> BinnedColumn:
        """Quantile bins over finite ``values`` ``[N]`` (one bin per value if there are few distinct ones)."""
        unique = np.unique(values)
        if len(unique) <= n_bins:
            cuts = _midpoints(unique[:-1], unique[1:])
        else:
            edges = np.quantile(values, np.linspace(0, 1, n_bins + 1))[1:-1]
            # move each edge to the midpoint of the fitting values around it: no bin is left empty
            above = np.unique(np.searchsorted(unique, edges[edges > unique[0]], side="left"))
            cuts = _midpoints(unique[above - 1], unique[above])
        bins = np.searchsorted(cuts, values, side="right")
        counts = np.bincount(bins, minlength=len(cuts) + 1)
        reps = np.bincount(bins, weights=values, minlength=len(cuts) + 1) / counts
        if pd.api.types.pandas_dtype(dtype).kind in "iu":
            reps = np.round(reps)
        return cls(name, dtype, cuts.tolist(), reps.tolist(), float(unique[0]), float(unique[-1]))

    @property
    def size(self) -> int:
        return 1 + len(self.reps)

    def encode(self, series: pd.Series) -> np.ndarray:
        values = as_float(series, self.name)
        ids = 1 + np.searchsorted(np.asarray(self.cuts), values, side="right")
        return np.where(np.isnan(values), 0, ids).astype(np.int64)[:, None]

    def decode(self, ids: np.ndarray) -> pd.Series:
        reps = np.array([np.nan, *self.reps])
        return restore(reps[ids[:, 0]], ids[:, 0] == 0, self.dtype)

    @property
    def error_bound(self) -> float:
        lo = np.array([self.low, *self.cuts])
        hi = np.array([*self.cuts, self.high])
        reps = np.array(self.reps)
        largest = max(abs(self.low), abs(self.high), float(np.abs(reps).max()))
        return float(np.maximum(np.abs(reps - lo), np.abs(hi - reps)).max()) + self._rounding(largest)


@dataclass
class DigitColumn(Column):
    """A sign id (0 missing, 1 plus, 2 minus), then ``int_digits + decimals`` digit ids ``3 + digit``, most
    significant first; larger magnitudes are clipped to the largest number the digits hold."""

    name: str
    dtype: str
    int_digits: int
    decimals: int

    kind: ClassVar[str] = "digits"

    def __post_init__(self) -> None:
        if self.int_digits < 1 or self.decimals < 0 or self.int_digits + self.decimals > MAX_DIGITS:
            raise ValueError(
                f"column {self.name!r}: need int_digits >= 1, decimals >= 0 and at most {MAX_DIGITS} digits "
                f"in all, got {self.int_digits} + {self.decimals}"
            )

    @classmethod
    def fit(cls, name: str, dtype: str, values: np.ndarray, decimals: int) -> DigitColumn:
        """Enough integer digits for the largest ``|value|`` of finite ``values`` ``[N]``."""
        if pd.api.types.pandas_dtype(dtype).kind in "iu":
            decimals = 0
        largest = round(float(np.abs(values).max()) * 10**decimals)
        return cls(name, dtype, max(len(str(largest)) - decimals, 1), decimals)

    @property
    def size(self) -> int:
        return 13

    def steps(self) -> list[tuple[Interval, ...]]:
        return [((0, 3),)] + [((3, 13),)] * (self.int_digits + self.decimals)

    def encode(self, series: pd.Series) -> np.ndarray:
        values = as_float(series, self.name)
        n = self.int_digits + self.decimals
        missing = np.isnan(values)
        scaled = np.round(np.abs(np.where(missing, 0.0, values)) * 10.0**self.decimals)
        scaled = np.minimum(scaled, 10.0**n - 1).astype(np.int64)  # (N,) clipped to the largest number
        powers = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)  # (n,)
        digits = scaled[:, None] // powers % 10  # (N, n)
        sign = np.where(missing, 0, np.where((values < 0) & (scaled > 0), 2, 1))
        return np.concatenate([sign[:, None], 3 + digits], axis=1).astype(np.int64)

    def decode(self, ids: np.ndarray) -> pd.Series:
        n = self.int_digits + self.decimals
        powers = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)  # (n,)
        magnitude = ((ids[:, 1:] - 3) * powers).sum(axis=1) / 10.0**self.decimals  # (N,)
        values = np.where(ids[:, 0] == 2, -magnitude, magnitude)
        return restore(values, ids[:, 0] == 0, self.dtype)

    @property
    def error_bound(self) -> float:
        if self.decimals == 0 and pd.api.types.pandas_dtype(self.dtype).kind in "iu":
            return 0.0  # integers, stored exactly
        return 0.5 * 10.0**-self.decimals + self._rounding(10.0**self.int_digits)


COLUMN_KINDS: dict[str, type[Column]] = {c.kind: c for c in (CategoricalColumn, BinnedColumn, DigitColumn)}


def column_from_dict(data: dict[str, Any]) -> Column:
    """Rebuild a codec from ``Column.to_dict()``."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in COLUMN_KINDS:
        raise ValueError(f"unknown column kind {kind!r}; known: {sorted(COLUMN_KINDS)}")
    try:
        return COLUMN_KINDS[kind](**data)
    except TypeError as err:
        raise ValueError(f"bad {kind} column spec {data!r:.200}: {err}") from None


def fit_column(
    series: pd.Series, *, categorical: bool, encoding: NumericEncoding | None, n_bins: int, decimals: int,
    max_digits: int, min_frequency: int,
) -> Column:
    """Pick and fit the codec of one column (``TableTokenizer.fit`` describes the arguments).

    A numeric column is binned, or digit-encoded when ``encoding="digits"`` or when, left to choose
    (``encoding=None``), it holds integers with more than ``n_bins`` distinct values all below
    ``10**max_digits``. An all-missing column becomes a categorical column with no categories.
    """
    name, dtype = str(series.name), str(series.dtype)
    if not categorical and is_number_column(series):
        values = as_float(series, name)
        finite = values[~np.isnan(values)]
        if finite.size:
            if encoding is None:
                whole = pd.api.types.is_integer_dtype(series.dtype) and np.abs(finite).max() < 10**max_digits
                encoding = "digits" if whole and np.unique(finite).size > n_bins else "quantile"
            if encoding == "digits":
                return DigitColumn.fit(name, dtype, finite, decimals)
            return BinnedColumn.fit(name, dtype, finite, n_bins)
    elif encoding is not None:
        raise ValueError(f"column {name!r} is categorical (dtype {dtype}); numeric encodings need numbers")
    return _fit_categorical(series, name, dtype, min_frequency)


def _fit_categorical(series: pd.Series, name: str, dtype: str, min_frequency: int) -> CategoricalColumn:
    found = value_type(series)
    if found == "empty":
        kind = "float" if is_number_column(series) else "str"  # no values: the dtype decides
        kind = "bool" if pd.api.types.is_bool_dtype(series.dtype) else kind
    elif found in VALUE_TYPES:
        kind = VALUE_TYPES[found]
    else:
        raise ValueError(
            f"column {name!r} holds values pandas infers as {found!r} (dtype {dtype}): a categorical column "
            "needs one type of value (str, bool, int or float); convert it, e.g. with .astype(str) or "
            "pd.to_numeric"
        )
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories, ordered = series.dtype.categories.tolist(), bool(series.dtype.ordered)
    else:
        counts = series.value_counts(dropna=True)
        categories, ordered = sorted(counts.index[counts.to_numpy() >= min_frequency].tolist()), False
    categories = [c.item() if isinstance(c, np.generic) else c for c in categories]
    return CategoricalColumn(name, dtype, kind, categories, ordered)
