"""Table data and tasks on tiny models: bundled data, prediction, generation, release, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from training import train_epochs

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.heads import DecodingConfig
from anytoken.models.numeric import NumericEncoder, piecewise_linear
from anytoken.tasks.callbacks import RestoreBest
from anytoken.tasks.data.tables import BUNDLED, TableDataModule, load_bundled, load_table, split_table
from anytoken.tasks.metrics.tables import marginal_distance, prediction_metrics
from anytoken.tasks.tables import TableGenerationModule, TablePredictionModule

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs_shrink lives in tests/
from configs_shrink import shrink_config  # noqa: E402
from training import train_steps  # noqa: E402

TINY = dict(backbone=TransformerConfig.from_name("tiny", max_seq_len=64), warmup_steps=2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, above all on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def iris() -> TableDataModule:
    return TableDataModule("iris", n_bins=8, batch_size=32)


@pytest.fixture(scope="module")
def diabetes() -> TableDataModule:
    return TableDataModule("diabetes", n_bins=8, batch_size=32, max_rows=120)


def test_bundled_datasets_load_offline_with_a_target_column() -> None:
    shapes = {"iris": (150, 5), "wine": (178, 14), "breast_cancer": (569, 31), "diabetes": (442, 11),
              "digits": (1797, 65)}
    for name in BUNDLED:
        frame = load_bundled(name)
        assert frame.shape == shapes[name]
        assert str(frame["target"].dtype) == ("float64" if name == "diabetes" else "str")
    assert set(load_bundled("iris")["target"]) == {"setosa", "versicolor", "virginica"}
    with pytest.raises(ValueError, match="unknown bundled dataset"):
        load_bundled("titanic")


def test_sources_and_splits(tmp_path) -> None:
    frame = load_bundled("wine")
    frame.to_csv(tmp_path / "wine.csv", index=False)
    frame.to_parquet(tmp_path / "wine.parquet")
    for source in (frame, tmp_path / "wine.csv", str(tmp_path / "wine.parquet")):
        assert load_table(source).shape == frame.shape
    with pytest.raises(ValueError, match="bundled dataset"):
        load_table("wine.xlsx")
    splits = split_table(frame, 0.2, 0.1, seed=3)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [124, 36, 18]
    again = split_table(frame, 0.2, 0.1, seed=3)
    pd.testing.assert_frame_equal(splits["test"], again["test"])
    with pytest.raises(ValueError, match="fractions"):
        split_table(frame, 0.6, 0.5, seed=0)


def test_datamodule_batches_vocab_and_saved_tokenizer(tmp_path, iris) -> None:
    batch = next(iter(iris.train_dataloader()))
    assert isinstance(batch["rows"], pd.DataFrame) and batch["rows"].shape == (32, 5)
    assert iris.vocab["tokenizers"]["table"]["tokenizer"] == "table"
    assert iris.vocab["token_space"]["modalities"] == {"table": iris.tokenizer.vocab_size}
    iris.tokenizer.save_pretrained(tmp_path / "tok")
    dm = TableDataModule("iris", tokenizer_path=str(tmp_path / "tok"), drop=["sepal width (cm)"])
    assert dm.tokenizer.columns == iris.tokenizer.columns  # the saved schema wins
    with pytest.raises(ValueError, match="drop names columns"):
        TableDataModule("iris", drop=["nope"])


def test_classification_learns_and_decodes_only_target_values(iris) -> None:
    task = TablePredictionModule(iris.vocab, target="target", **TINY)
    fmt = task.model.task_format("table_prediction")
    assert fmt.is_classification and fmt.features == iris.tokenizer.columns[:4]
    batch = next(iter(iris.train_dataloader()))
    first, last = train_steps(task, batch, 30, lr=5e-3)
    assert last < 0.3 * first
    model = task.model.eval()
    rows = batch["rows"].drop(columns=["target"])  # the target column need not be present
    pred = model.predict_rows(rows)  # greedy decoding under the target column's grammar
    assert set(pred.dropna()) <= {"setosa", "versicolor", "virginica"}
    probs = fmt.column_probs(model, rows)  # (32, <missing> <unk> 3 classes)
    assert probs.shape == (32, 5) and torch.allclose(probs.sum(-1), torch.ones(32))
    values = [None, None, *iris.tokenizer.column("target").categories]
    assert [None if pd.isna(p) else p for p in pred] == [values[i] for i in probs.argmax(-1)]


def test_regression_predicts_numbers_by_mean_and_by_grammar(diabetes) -> None:
    model = TablePredictionModule(diabetes.vocab, target="target", regression="mean", **TINY).model.eval()
    rows = diabetes.splits["val"].head(6)
    mean = model.predict_rows(rows)
    assert mean.dtype == np.float64 and mean.between(25, 346).all()
    model.task_format("table_prediction").regression = "mode"
    mode = model.predict_rows(rows)
    assert set(mode.dropna()) <= set(diabetes.tokenizer.column("target").reps)
    metrics = prediction_metrics(rows["target"], mean, False)
    assert set(metrics) == {"rmse", "mae"} and metrics["rmse"] >= metrics["mae"] > 0


def test_piecewise_linear_encoding_is_ordered_and_zero_for_missing() -> None:
    edges = torch.tensor([0.0, 1.0, 2.0, 4.0])
    ple = piecewise_linear(torch.tensor([-1.0, 0.5, 1.5, 3.0, 5.0, float("nan")]), edges)
    expected = [[-1, 0, 0], [0.5, 0, 0], [1, 0.5, 0], [1, 1, 0.5], [1, 1, 1.5], [0, 0, 0]]
    assert torch.allclose(ple, torch.tensor(expected))  # open below the first and above the last edge
    encoder = NumericEncoder([[0.0, 1.0, 2.0]], d_model=8)
    assert not encoder(0, torch.tensor([0.3, 1.7])).any()  # starts at zero: the bin-token model


def test_numeric_inputs_reach_only_prompt_values(iris) -> None:
    batch = {"rows": iris.splits["val"].head(4)}
    bins = TablePredictionModule(iris.vocab, numeric_inputs="bins", **TINY).model
    ple = TablePredictionModule(iris.vocab, numeric_inputs="ple", **TINY).model
    fmt = ple.task_format("table_prediction")
    assert fmt.numeric_columns == iris.tokenizer.columns[:4]
    for linear in fmt.numeric.maps:
        torch.nn.init.normal_(linear.weight)
    seq = fmt.rows(ple, batch)
    changed = (fmt.embed(ple, seq, batch) != ple.embed(seq, batch)).any(-1)  # (4, T)
    start = ple.space.range("table").start
    blocks = [iris.tokenizer.value_ids(c) for c in fmt.features]
    values = torch.zeros_like(changed)
    for block in blocks:  # feature value positions (a column's smallest value encodes to zeros)
        values |= (seq.input_ids >= start + block.start + 1) & (seq.input_ids < start + block.stop)
    assert bool(changed.any()) and not bool((changed & ~values).any())  # never tags or the target
    plain = bins.task_format("table_prediction")
    assert torch.equal(plain.embed(bins, seq, batch), bins.embed(seq, batch))


def test_ple_only_replaces_the_bin_embedding_of_prompt_values(iris) -> None:
    batch = {"rows": iris.splits["val"].head(4)}
    model = TablePredictionModule(iris.vocab, numeric_inputs="ple_only", **TINY).model
    fmt = model.task_format("table_prediction")
    seq = fmt.rows(model, batch)
    before = fmt.embed(model, seq, batch)
    with torch.no_grad():  # every bin's own embedding changes; prompt values must not see it
        model.backbone.embed.weight.add_(1.0)
    after = fmt.embed(model, seq, batch)
    start = model.space.range("table").start
    values = torch.zeros_like(seq.input_ids, dtype=torch.bool)
    for name in fmt.features:
        block = iris.tokenizer.value_ids(name)
        values |= (seq.input_ids > start + block.start) & (seq.input_ids < start + block.stop)
    values &= seq.targets.roll(1, 1) == -100  # the prompt, not the generated target
    assert bool(values.any())
    assert torch.equal(before[values], after[values]) and not torch.equal(before[~values], after[~values])


def test_the_value_head_learns_a_number(tmp_path) -> None:
    """The learning check of regression: ``regression="head"`` predicts unseen petal lengths far better
    than the training mean, and a release gives the same numbers."""
    torch.manual_seed(0)
    data = TableDataModule("iris", n_bins=8, batch_size=32, val_fraction=0.3, test_fraction=0.0)
    task = TablePredictionModule(data.vocab, target="petal length (cm)", regression="head",
                                 numeric_inputs="ple_only", **TINY)
    train_epochs(task, data, 12)
    rows = data.splits["val"]
    pred = task.model.eval().predict_rows(rows)
    rmse = prediction_metrics(rows["petal length (cm)"], pred, False)["rmse"]
    mean = float(data.splits["train"]["petal length (cm)"].mean())
    baseline = float(np.sqrt(((rows["petal length (cm)"] - mean) ** 2).mean()))
    assert rmse < 0.5 * baseline, (rmse, baseline)
    task.export(tmp_path / "release")
    assert anytoken.load(tmp_path / "release").predict_rows(rows).tolist() == pred.tolist()


def test_the_linear_term_keeps_rising_beyond_the_training_range(tmp_path) -> None:
    """With ``linear_term`` the predicted petal length keeps growing with petal width past the widest
    training value (the network alone levels off there); a release holds the term, and a missing feature
    value counts as its mean."""
    torch.manual_seed(0)
    data = TableDataModule("iris", n_bins=8, batch_size=32, val_fraction=0.3, test_fraction=0.0)
    task = TablePredictionModule(data.vocab, target="petal length (cm)", linear_term=True, **TINY)
    train_epochs(task, data, 12)
    train, column = data.splits["train"], "petal width (cm)"
    rows = pd.concat([train.nlargest(1, column)] * 3, ignore_index=True)
    rows[column] = train[column].max() + np.array([1.0, 2.0, 3.0])
    pred = task.model.eval().predict_rows(rows)
    assert (np.diff(pred.to_numpy()) > 0.02).all(), pred.tolist()
    task.export(tmp_path / "release")
    assert anytoken.load(tmp_path / "release").predict_rows(rows).tolist() == pred.tolist()
    assert task.model.predict_rows(rows.assign(**{column: np.nan})).notna().all()


def test_the_value_head_is_for_binned_targets_only(iris) -> None:
    fmt = TablePredictionModule(iris.vocab, target="target", regression="head", **TINY).model.task_format(
        "table_prediction")
    assert fmt.value_head is None  # a class is chosen, not regressed
    with pytest.raises(ValueError, match="regression"):
        TablePredictionModule(iris.vocab, target="petal length (cm)", regression="median", **TINY)


def test_a_tiny_model_beats_the_majority_class_on_unseen_rows() -> None:
    """The learning check: a tiny model trained for a few seconds classifies unseen iris rows far better
    than always answering the most common class."""
    torch.manual_seed(0)
    data = TableDataModule("iris", n_bins=8, batch_size=32, val_fraction=0.3, test_fraction=0.0)
    task = TablePredictionModule(data.vocab, target="target", **TINY)
    train_epochs(task, data, 12)  # epochs of 4 batches
    rows = data.splits["val"]
    accuracy = prediction_metrics(rows["target"], task.model.eval().predict_rows(rows), True)["accuracy"]
    majority = float(rows["target"].value_counts(normalize=True).iloc[0])
    assert accuracy >= majority + 0.4, (accuracy, majority)


def test_a_class_gets_its_linear_term_in_its_logits(tmp_path) -> None:
    """With ``linear_term`` (the module's default) a class target's logits add a linear function of the
    numeric features: trained away from zero, kept by a release; without it there is none."""
    torch.manual_seed(0)
    data = TableDataModule("iris", n_bins=8, batch_size=32, val_fraction=0.3, test_fraction=0.0)
    task = TablePredictionModule(data.vocab, target="target", **TINY)
    fmt = task.model.task_format("table_prediction")
    assert fmt.linear.weight.shape == (len(data.tokenizer.value_ids("target")), len(fmt.features))
    train_epochs(task, data, 2)
    assert fmt.linear.weight.abs().sum() > 0
    rows = data.splits["val"].head(8)
    probs = fmt.column_probs(task.model.eval(), rows)
    task.export(tmp_path / "release")
    loaded = anytoken.load(tmp_path / "release")
    assert torch.equal(loaded.task_format("table_prediction").column_probs(loaded, rows), probs)
    plain = TablePredictionModule(data.vocab, target="target", linear_term=False, **TINY)
    assert plain.model.task_format("table_prediction").linear is None


def test_any_column_can_be_the_target(iris) -> None:
    model = TablePredictionModule(iris.vocab, target="petal width (cm)", **TINY).model.eval()
    fmt = model.task_format("table_prediction")
    assert not fmt.is_classification and "target" in fmt.features
    assert len(model.predict_rows(iris.splits["val"].head(4))) == 4
    with pytest.raises(ValueError, match="not a column"):
        TablePredictionModule(iris.vocab, target="colour", **TINY)


def test_generation_unconditional_and_conditioned(iris) -> None:
    task = TableGenerationModule(iris.vocab, decoding=DecodingConfig(strategy="sample"), **TINY)
    batch = next(iter(iris.train_dataloader()))
    task.train()
    losses = [float(task.loss(batch)) for _ in range(4)]  # random column subsets per batch
    assert all(np.isfinite(losses))
    model = task.model.eval()
    rows = model.sample_rows(7)
    assert rows.shape == (7, 5) and rows.dtypes.to_dict() == iris.splits["train"].dtypes.to_dict()
    given = iris.splits["test"][["target", "sepal length (cm)"]].head(5)
    completed = model.sample_rows(given=given)
    assert list(completed.columns) == iris.tokenizer.columns
    pd.testing.assert_frame_equal(completed[given.columns], given.reset_index(drop=True))
    assert model.sample_rows(0).shape == (0, 5)
    with pytest.raises(ValueError, match="proper subset"):
        TableGenerationModule(iris.vocab, condition_on=iris.tokenizer.columns, **TINY)


def test_marginal_distance() -> None:
    real = pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    assert marginal_distance(real, real) == {"x": 0.0, "c": 0.0}
    other = pd.DataFrame({"x": np.full(100, 1000.0), "c": ["z"] * 100})
    assert marginal_distance(real, other) == {"x": pytest.approx(0.9), "c": 1.0}


def test_release_round_trip_gives_identical_predictions(tmp_path, iris) -> None:
    task = TablePredictionModule(iris.vocab, target="target", **TINY).eval()
    task.export(tmp_path / "release")
    model, loaded = task.model, anytoken.load(tmp_path / "release")
    rows = iris.splits["test"]
    probs = [m.task_format("table_prediction").column_probs(m, rows) for m in (model, loaded)]
    torch.testing.assert_close(probs[0], probs[1], rtol=0, atol=0)
    assert model.predict_rows(rows).tolist() == loaded.predict_rows(rows).tolist()


def test_a_release_predicts_without_lightning(tmp_path, iris, repo_root) -> None:
    TablePredictionModule(iris.vocab, target="target", **TINY).export(tmp_path / "release")
    iris.splits["test"].to_csv(tmp_path / "rows.csv", index=False)
    code = (f"import sys, anytoken, pandas as pd; m = anytoken.load({str(tmp_path / 'release')!r}); "
            f"print(m.predict_rows(pd.read_csv({str(tmp_path / 'rows.csv')!r})).tolist()); "
            "assert 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)


@pytest.mark.parametrize("name", ["table_predict_wine", "table_generate_iris"])
def test_config_fit_test_predict(name, tmp_path, repo_root) -> None:
    from anytoken.cli import main

    config = shrink_config(repo_root / "configs" / f"{name}.yaml", tmp_path)
    main(["fit", "--config", str(config)])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    main(["test", "--config", str(config), "--ckpt_path", str(ckpt)])
    main(["predict", "--config", str(config), "--ckpt_path", str(ckpt)])
    logged = " ".join(p.read_text() for p in tmp_path.rglob("metrics.csv"))
    assert ("test/accuracy" if "predict" in name else "test/marginal_tvd") in logged
    model = anytoken.load(tmp_path / "runs" / name / "release")
    assert model.tokenizers["table"].columns == anytoken.load(ckpt).tokenizers["table"].columns


def test_restore_best_loads_the_weights_of_the_best_validation() -> None:
    """Early stopping by restoring (the table configs): the weights at the lowest ``val/loss`` come back
    when training ends, whatever came after them."""
    net = torch.nn.Linear(2, 1)
    best = RestoreBest("val/loss")
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={}, global_step=0)
    saved = None
    for step, loss in enumerate([3.0, 1.0, 2.0, 1.0]):  # best at step 1; a tie does not replace it
        with torch.no_grad():
            net.weight.fill_(float(step))
        trainer.global_step, trainer.callback_metrics = step, {"val/loss": torch.tensor(loss)}
        best.on_validation_end(trainer, net)
        saved = net.weight.clone() if step == 1 else saved
    best.on_train_end(trainer, net)
    assert torch.equal(net.weight, saved) and best.best_step == 1
    with pytest.raises(KeyError, match="val/acc"):
        RestoreBest("val/acc", mode="max").on_validation_end(trainer, net)
    with pytest.raises(ValueError, match="mode"):
        RestoreBest(mode="lowest")
