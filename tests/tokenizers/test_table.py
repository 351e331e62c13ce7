"""The table tokenizer: fitting, round trips within stated bounds, grammar, persistence and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anytoken.backbone import CausalTransformer, TransformerConfig
from anytoken.heads import GrammarConstraint, LMHead, generate
from anytoken.tokenizers import Tokenizer, TokenSpace, tokenizer_from_spec
from anytoken.tokenizers.table import TableTokenizer


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Every supported column kind, with missing values where the dtype allows them."""
    rng = np.random.default_rng(seed)
    height = rng.normal(170, 10, n)
    height[::7] = np.nan
    city = rng.choice(["paris", "oslo", "lima"], n).astype(object)
    city[::5] = None
    return pd.DataFrame({
        "height": height,  # float, many values -> quantile bins
        "age": rng.integers(0, 120, n),  # int, many values -> digits
        "rooms": rng.integers(1, 5, n),  # int, few values -> one exact bin per value
        "city": pd.Series(city, dtype="str"),
        "member": rng.random(n) < 0.5,
        "grade": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["c", "b", "a"], ordered=True),
        "score": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 5, n)), dtype="Int64"),
    })


def _assert_round_trip(tok: TableTokenizer, frame: pd.DataFrame) -> None:
    out = tok.decode(tok.encode(frame))
    assert list(out.columns) == list(frame.columns)
    assert out.dtypes.to_dict() == frame.dtypes.to_dict()
    bounds = tok.error_bounds()
    for name in frame.columns:
        a, b = frame[name].reset_index(drop=True), out[name]
        assert (a.isna() == b.isna()).all(), name
        if tok.column(name).kind == "categorical":
            assert a[a.notna()].tolist() == b[b.notna()].tolist(), name
        else:
            err = np.abs(a[a.notna()].to_numpy(float) - b[b.notna()].to_numpy(float))
            assert err.max(initial=0) <= bounds[name] * (1 + 1e-6) + 1e-9, (name, err.max(), bounds[name])


def test_fit_picks_a_codec_per_column_and_round_trips() -> None:
    frame = _frame()
    tok = TableTokenizer.fit(frame, n_bins=8)
    kinds = {c.name: c.kind for c in tok.schema}
    assert kinds == {"height": "binned", "age": "digits", "rooms": "binned", "city": "categorical",
                     "member": "categorical", "grade": "categorical", "score": "binned"}
    assert tok.error_bounds()["rooms"] == 0.5 and tok.error_bounds()["age"] == 0.0
    ids = tok.encode(frame)
    assert ids.dtype == torch.long and ids.shape == (60, tok.row_length()) and int(ids.max()) < tok.vocab_size
    _assert_round_trip(tok, frame)
    assert tok.decode(ids[3]).shape == (1, 7)  # one row given as [L]
    assert 0 < tok.reconstruction_error(frame) < 0.05


def test_numeric_error_bound_holds_for_any_value_in_the_fitted_range() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"x": rng.lognormal(size=500), "y": rng.normal(size=500)})
    tok = TableTokenizer.fit(train, n_bins=16, numeric={"y": "digits"}, decimals=2)
    col = tok.column("x")
    probe = pd.DataFrame({"x": rng.uniform(col.low, col.high, 2000), "y": rng.uniform(-3, 3, 2000)})
    out = tok.decode(tok.encode(probe))
    bounds = tok.error_bounds()
    assert bounds["y"] == pytest.approx(0.005)
    for name in ("x", "y"):
        assert np.abs(out[name] - probe[name]).max() <= bounds[name] + 1e-9


def test_digit_columns_sign_clip_and_missing() -> None:
    tok = TableTokenizer.fit(pd.DataFrame({"v": [-12.5, 3.25, 99.0]}), numeric={"v": "digits"}, decimals=1)
    col = tok.column("v")
    assert (col.int_digits, col.decimals) == (2, 1)
    out = tok.decode(tok.encode(pd.DataFrame({"v": [-12.5, 0.04, -0.04, 1234.0, np.nan]})))["v"].tolist()
    assert out[:4] == [-12.5, 0.0, 0.0, 99.9] and np.isnan(out[4])  # beyond the digits: clipped
    small = TableTokenizer.fit(pd.DataFrame({"u": np.arange(250, dtype=np.uint8)}))
    nines = small.encode(pd.DataFrame({"u": np.array([7], dtype=np.uint8)}))
    nines[0, 2:] = small.value_ids("u").start + 3 + 9  # 999, as a model might generate
    assert small.decode(nines)["u"].tolist() == [255]  # clipped to the dtype


def test_shuffled_column_order_decodes_to_the_same_rows() -> None:
    frame = _frame(40)
    tok = TableTokenizer.fit(frame)
    fixed = tok.encode(frame)
    shuffled = tok.encode(frame, order="shuffle", rng=np.random.default_rng(0))
    assert shuffled.shape == fixed.shape and not torch.equal(shuffled, fixed)
    assert (shuffled.sort(dim=1).values == fixed.sort(dim=1).values).all()
    pd.testing.assert_frame_equal(tok.decode(shuffled), tok.decode(fixed))


def test_column_subsets_encode_in_the_order_asked() -> None:
    frame = _frame(10)
    tok = TableTokenizer.fit(frame)
    ids = tok.encode(frame.drop(columns=["height"]), columns=["city", "rooms"])
    assert ids.shape == (10, tok.row_length(["city", "rooms"])) and int(ids[0, 0]) == tok.tag_id("city")
    assert list(tok.decode(ids).columns) == ["rooms", "city"]  # decoded frames follow the schema


def _allowed(space: TokenSpace, grammar, ids: torch.Tensor) -> bool:
    mask = space.grammar_mask("table", grammar)  # (S, V)
    g = space.to_global("table", ids)
    return all(bool(mask[i % len(grammar.steps), int(t)]) for i, t in enumerate(g))


def test_every_encoded_row_satisfies_the_grammar() -> None:
    frame = _frame(30)
    tok = TableTokenizer.fit(frame)
    space = TokenSpace({"table": tok.vocab_size})
    grammar = tok.grammar()
    assert grammar.min_length == grammar.max_length == tok.row_length()
    assert all(_allowed(space, grammar, row) for row in tok.encode(frame))
    values = tok.value_ids("city")
    assert tok.column_grammar("city").steps == (((3, 4),), ((values.start, values.stop),))
    assert tok.grammar(rows=None).max_length is None


def test_constrained_generation_with_the_shared_decoder_yields_well_formed_rows() -> None:
    frame = _frame(30)
    tok = TableTokenizer.fit(frame)
    space = TokenSpace({"table": tok.vocab_size})
    model = CausalTransformer(TransformerConfig.from_name("tiny", vocab_size=space.vocab_size)).eval()
    head = LMHead(model)
    prompt = torch.tensor([[space.bos_id, space.begin("table")]] * 4)
    embeds = model.embed_ids(prompt)
    out = generate(model, head, embeds, torch.ones_like(prompt, dtype=torch.bool),
                   GrammarConstraint(space, "table", tok.grammar()), pad_id=space.pad_id)
    assert (out[:, -1] == space.end("table")).all()
    rows = tok.decode(space.to_local(out[:, :-1], "table"))
    assert list(rows.columns) == tok.columns and len(rows) == 4
    one = generate(model, head, embeds, torch.ones_like(prompt, dtype=torch.bool),
                   GrammarConstraint(space, "table", tok.column_grammar("grade")), pad_id=space.pad_id)
    assert set(tok.decode(space.to_local(one[:, :-1], "table"))["grade"].dropna()) <= {"a", "b", "c"}


def test_save_load_and_spec_round_trip(tmp_path) -> None:
    frame = _frame()
    tok = TableTokenizer.fit(frame)
    json.dumps(tok.config())  # the whole state is JSON: a model's hyperparameters carry it
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, TableTokenizer) and torch.equal(loaded.encode(frame), tok.encode(frame))
    rebuilt = tokenizer_from_spec(json.loads(json.dumps(tok.spec())))
    pd.testing.assert_frame_equal(rebuilt.decode(tok.encode(frame)), tok.decode(tok.encode(frame)))


def test_cli_encodes_and_decodes_csv_and_parquet(tmp_path, capsys) -> None:
    from anytoken.cli import main

    frame = _frame(20)
    TableTokenizer.fit(frame).save_pretrained(tmp_path / "tok")
    frame.to_parquet(tmp_path / "rows.parquet")
    frame.drop(columns=["grade", "score"]).to_csv(tmp_path / "rows.csv", index=False)
    tok, csv_tok = ["--tokenizer", str(tmp_path / "tok")], ["--tokenizer", str(tmp_path / "csv_tok")]
    main(["encode", str(tmp_path / "rows.parquet"), *tok, "-o", str(tmp_path / "ids.npy")])
    main(["decode", str(tmp_path / "ids.npy"), *tok, "-o", str(tmp_path / "out.parquet")])
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.shape == frame.shape and (out["city"].isna() == frame["city"].isna()).all()
    TableTokenizer.fit(tmp_path / "rows.csv").save_pretrained(tmp_path / "csv_tok")
    main(["encode", str(tmp_path / "rows.csv"), *csv_tok, "-o", str(tmp_path / "c.npy")])
    main(["decode", str(tmp_path / "c.npy"), *csv_tok, "-o", str(tmp_path / "c.csv")])
    assert pd.read_csv(tmp_path / "c.csv").shape == (20, 5)
    with pytest.raises(SystemExit, match="differ from the fitted schema"):
        main(["encode", str(tmp_path / "rows.csv"), *tok, "-o", str(tmp_path / "x.npy")])


# --- bad input -----------------------------------------------------------------------------------------
def test_unseen_categories_encode_to_unk_and_decode_as_missing() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "a", "z"], "x": [1.0, 2.0, 3.0, 4.0]})
    tok = TableTokenizer.fit(frame, min_frequency=2)
    assert tok.column("c").categories == ["a"]  # "b" and "z" are rarer than min_frequency
    ids = tok.encode(pd.DataFrame({"c": ["a", "new", None], "x": [1.0, 2.0, 3.0]}))
    start = tok.value_ids("c").start
    assert ids[:, 1].tolist() == [start + 2, start + 1, start + 0]  # category, <unk>, <missing>
    assert tok.decode(ids)["c"].isna().tolist() == [False, True, True]


def test_schema_mismatches_raise() -> None:
    tok = TableTokenizer.fit(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        tok.encode(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match=r"not in the schema \['c'\]"):
        tok.encode(pd.DataFrame({"a": [1.0], "b": ["x"], "c": [0]}))
    with pytest.raises(ValueError, match="unknown column 'c'"):
        tok.encode(pd.DataFrame({"a": [1.0], "c": [0]}), columns=["c"])
    with pytest.raises(ValueError, match="fitted as numeric|is numeric in the schema"):
        tok.encode(pd.DataFrame({"a": ["1"], "b": ["x"]}))
    with pytest.raises(ValueError, match="fitted on str categories"):
        tok.encode(pd.DataFrame({"a": [1.0], "b": [3]}))
    with pytest.raises(ValueError, match="expects a pandas DataFrame"):
        tok.encode([[1.0, "x"]])


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"a": pd.Series([1, "x", 2.5], dtype=object)}), "one type of value"),
        (pd.DataFrame({"a": [1.0, np.inf]}), "infinite"),
        (pd.DataFrame({"a": pd.to_datetime(["2020-01-01", "2021-01-01"])}), "infers as 'datetime"),
        (pd.DataFrame({"a": [1.0]}).iloc[:0], "empty table"),
        (pd.DataFrame(index=range(3)), "empty table"),
        (pd.DataFrame({0: [1.0]}), "must be strings"),
    ],
    ids=["mixed_types", "inf", "datetime", "no_rows", "no_columns", "int_labels"],
)
def test_bad_tables_fail_to_fit(frame, match) -> None:
    with pytest.raises(ValueError, match=match):
        TableTokenizer.fit(frame)


def test_all_missing_columns_empty_frames_and_infinities_at_encode() -> None:
    frame = pd.DataFrame({"empty": [np.nan] * 4, "x": [1.0, 2.0, 3.0, 4.0]})
    tok = TableTokenizer.fit(frame)
    assert tok.column("empty").kind == "categorical" and tok.column("empty").categories == []
    _assert_round_trip(tok, frame)
    assert tok.decode(tok.encode(pd.DataFrame({"empty": [5.0], "x": [1.0]})))["empty"].isna().all()  # <unk>
    none = tok.encode(frame.iloc[:0])
    assert none.shape == (0, tok.row_length())
    assert tok.decode(none).dtypes.to_dict() == frame.dtypes.to_dict()
    with pytest.raises(ValueError, match="infinite"):
        tok.encode(pd.DataFrame({"empty": [np.nan], "x": [-np.inf]}))


@pytest.mark.parametrize(
    ("ids", "match"),
    [
        ([0, 5, 0, 5], "twice"),
        ([3, 3], "not a tag"),
        ([0], "cut short"),
        ([0, 1], "not a value of column 'a'"),
        ([0, 2.0], "integers"),
    ],
)
def test_malformed_ids_fail_to_decode(ids, match) -> None:
    tok = TableTokenizer.fit(pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}))
    with pytest.raises(ValueError, match=match):
        tok.decode(torch.tensor(ids))


def test_rows_with_different_columns_fail_to_decode() -> None:
    tok = TableTokenizer.fit(pd.DataFrame({"a": ["x", "y"], "b": ["u", "v"]}))
    a = tok.encode(pd.DataFrame({"a": ["x"]}), columns=["a"])
    b = tok.encode(pd.DataFrame({"b": ["u"]}), columns=["b"])
    with pytest.raises(ValueError, match="different columns"):
        tok.decode(torch.cat([a, b]))


# --- property tests ------------------------------------------------------------------------------------
def _column(kind: str, n: int):
    floats = st.floats(-1e4, 1e4, allow_nan=False, width=64)
    if kind == "float":
        return st.lists(st.one_of(floats, st.just(np.nan)), min_size=n, max_size=n).map(np.array)
    if kind == "float32":
        return st.lists(floats, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.float32))
    if kind == "int":
        return st.lists(st.integers(-10**5, 10**5), min_size=n, max_size=n).map(np.array)
    if kind == "str":
        text = st.one_of(st.text(max_size=4), st.none())
        return st.lists(text, min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype="str"))
    return st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)


@st.composite
def _frames(draw):
    n = draw(st.integers(1, 30))
    kinds = st.sampled_from(["float", "float32", "int", "str", "bool"])
    kinds = draw(st.lists(kinds, min_size=1, max_size=5))
    return pd.DataFrame({f"c{i}": draw(_column(k, n)) for i, k in enumerate(kinds)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=_frames(), n_bins=st.integers(1, 12), digits=st.booleans())
def test_round_trip_property(frame, n_bins, digits) -> None:
    """Any table: dtypes preserved, categories exact, numbers within each column's stated bound."""
    numeric = {c: "digits" for c in frame.columns if digits and frame[c].dtype.kind in "if"}
    tok = TableTokenizer.fit(frame, n_bins=n_bins, numeric=numeric, decimals=3)
    _assert_round_trip(tok, frame)
    shuffled = tok.encode(frame, order="shuffle", rng=np.random.default_rng(0))
    pd.testing.assert_frame_equal(tok.decode(shuffled), tok.decode(tok.encode(frame)))
