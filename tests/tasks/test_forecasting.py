"""Forecasting: simulated motion, CSV windows, ADE/FDE metrics, the joint task module, grammar and config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training import train_epochs, train_steps

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.cli import main
from anytoken.heads import DecodingConfig
from anytoken.heads.fourier import FourierHead
from anytoken.tasks.data.forecasting import ForecastDataModule, csv_windows
from anytoken.tasks.data.synthetic.motion import KINDS, MotionConfig, MotionDataset
from anytoken.tasks.forecasting import ForecastingModule
from anytoken.tasks.metrics.forecast import (
    constant_velocity,
    displacement_errors,
    perturbed_velocity,
    sample_errors,
)
from anytoken.tokenizers.sequence import IGNORE_INDEX
from anytoken.tokenizers.trajectory_csv import Track, write_trajectory_csv


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny ops run fastest on one thread (several threads thrash on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_motion_kinds_behave() -> None:
    config = MotionConfig(num_agents=3, seed=1)
    ds = MotionDataset("train", 300, 20, config)
    again = MotionDataset("train", 300, 20, config)
    assert np.array_equal(ds.positions, again.positions)
    assert not np.array_equal(ds.positions[:10], MotionDataset("test", 10, 20, config).positions)
    step = np.diff(ds.positions, axis=2)  # (N, A, T-1, 2)
    speed = np.linalg.norm(step, axis=-1)
    assert speed.max() <= config.max_speed_cap + 1e-9
    turn = np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(step[..., 1], step[..., 0]), axis=-1))))
    kind = ds.kinds
    constant = kind == KINDS.index("constant")
    assert np.allclose(speed[constant], speed[constant][:, :1]) and turn[constant].max() < 1e-9
    turning = kind == KINDS.index("turning")
    assert turn[turning][:, -1].min() >= config.turn_rate[0] - 1e-9  # turning by the end of the scene
    stopping = kind == KINDS.index("stopping")
    assert speed[stopping][:, -1].max() < speed[stopping][:, 0].max()
    heldout = MotionDataset("heldout", 50, 20, config).kinds
    assert set(np.unique(heldout)) <= {KINDS.index("turning"), KINDS.index("accelerating")}
    with pytest.raises(ValueError, match="kinds"):
        MotionConfig(kinds=("flying",))


def test_metrics_and_constant_velocity() -> None:
    history = torch.tensor([[[0.0, 0.0], [1.0, 0.5]]])  # (1, H=2, 2)
    cv = constant_velocity(history, 3)
    assert torch.allclose(cv, torch.tensor([[[2.0, 1.0], [3.0, 1.5], [4.0, 2.0]]]))
    gt = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]]])
    ade, fde = displacement_errors(pred, gt)
    assert torch.allclose(ade, torch.tensor([5.0])) and torch.allclose(fde, torch.tensor([10.0]))
    gt2 = torch.zeros(1, 2, 3, 2)  # (B, A, F, 2)
    samples = torch.zeros(1, 2, 2, 3, 2)  # (B, k, A, F, 2): sample 0 good for agent 0, sample 1 for agent 1
    samples[0, 0, 1] = 1.0
    samples[0, 1, 0] = 2.0
    out = sample_errors(samples, gt2)
    assert torch.allclose(out["min_ade"], torch.zeros(1, 2))
    assert torch.allclose(out["joint_min_ade"], torch.tensor([2**0.5 / 2]))
    with pytest.raises(ValueError, match="H >= 2"):
        constant_velocity(history[:, :1], 3)
    with pytest.raises(ValueError, match="do not match"):
        displacement_errors(pred, torch.zeros(2, 3, 2))


def test_csv_windows(tmp_path) -> None:
    t = np.arange(10) * 0.4
    tracks = [Track("s", str(a), t, np.stack([t + a, t * 0], 1)) for a in range(5)]
    tracks.append(Track("short", "a", t[:3], np.zeros((3, 2))))
    write_trajectory_csv(tmp_path / "x.csv", tracks)
    windows = csv_windows(tmp_path / "x.csv", num_agents=2, length=6, stride=2)
    assert windows.shape == (2 * 3, 2, 6, 2)  # 2 groups of 2 agents (the 5th dropped), windows at 0, 2, 4
    with pytest.raises(ValueError, match="no scene"):
        csv_windows(tmp_path / "x.csv", num_agents=6, length=6, stride=2)
    data = ForecastDataModule(
        source="csv",
        csv_train=str(tmp_path / "x.csv"),
        csv_val=str(tmp_path / "x.csv"),
        num_agents=2,
        history=3,
        horizon=3,
        window_stride=2,
        num_bins=9,
        max_delta=2.0,
    )
    batch = data.collate([data.splits["train"][i] for i in range(3)])
    assert batch["history_ids"].shape == (3, 2 * 2 * 2) and batch["future_ids"].shape == (3, 2 * 2 * 3)
    assert (batch["kinds"] == -1).all()


@pytest.fixture(scope="module")
def data() -> ForecastDataModule:
    return ForecastDataModule(
        num_train=32,
        num_val=8,
        num_test=8,
        num_heldout=8,
        history=4,
        horizon=5,
        num_bins=17,
        max_delta=1.0,
        batch_size=8,
        motion=MotionConfig(num_agents=2),
    )


def _model(data: ForecastDataModule, **kwargs) -> ForecastingModule:
    return ForecastingModule(
        data.vocab, backbone=TransformerConfig.from_name("tiny", max_seq_len=64), **kwargs
    )


def test_batches_decode_back_within_the_bound(data) -> None:
    batch = next(iter(data.loader("val")))
    assert batch["history_ids"].shape == (8, 2 * 2 * 3) and batch["future_ids"].shape == (8, 2 * 2 * 5)
    model = _model(data).model
    fmt = model.task_format("forecast")
    full = torch.cat([batch["history_ids"], batch["future_ids"]], dim=1)
    paths = fmt.decode_scenes(model, full, batch["positions"][:, :, 0])
    assert float((paths - batch["positions"]).abs().max()) <= data.tokenizer.error_bound + 1e-9
    seq = fmt.rows(model, batch)
    assert int((seq.targets != IGNORE_INDEX).sum()) == 8 * (2 * 2 * 5 + 1)  # future ids and their end marker


@pytest.mark.parametrize("head", ["lm", "fourier"])
def test_forecast_follows_the_joint_grammar(data, head, tmp_path) -> None:
    task = _model(data, head=head, num_futures=3, fourier_gamma=1e-3)
    model = task.model.eval()
    assert isinstance(model.lm_head, FourierHead) == (head == "fourier")
    batch = next(iter(data.loader("val")))
    start = batch["positions"][:, :, 0]
    torch.manual_seed(0)
    futures = model.forecast(
        batch["history_ids"], start, 5, num_futures=3, decoding=DecodingConfig(strategy="sample")
    )
    assert futures.shape == (8, 3, 2, 5, 2) and torch.isfinite(futures).all()
    greedy = model.forecast(batch["history_ids"], start, 5)
    assert torch.equal(greedy, model.forecast(batch["history_ids"], start, 5))
    evaluation = task.evaluations["forecast"]
    metrics = evaluation.report(evaluation.step(model, batch))
    assert {"ade", "fde", "min_ade", "min_fde", "joint_min_ade", "cv_ade", "cv_fde"} <= set(metrics)
    assert metrics["min_ade"] <= metrics["joint_min_ade"] + 1e-9
    predicted = evaluation.predict(model, batch)
    assert len(predicted) == 8 and predicted[0]["futures"].shape == (3, 2, 5, 2)
    task.export(tmp_path / "release")
    loaded = anytoken.load(tmp_path / "release")
    fmt = loaded.task_format("forecast")
    assert fmt.num_futures == 3 and fmt.sampling == DecodingConfig(strategy="sample")
    assert torch.equal(loaded.forecast(batch["history_ids"], start, 5), greedy)


def test_generate_grammar_hook_and_penalty_hook(data) -> None:
    """The model's generate takes a grammar override, and adds a head's penalty to the loss."""
    task = _model(data, head="fourier", fourier_gamma=0.5)
    model = task.model.eval()
    batch = next(iter(data.loader("val")))
    ids = model.generate(
        model.task_format("forecast"),
        {"history_ids": batch["history_ids"]},
        "trajectory",
        DecodingConfig(max_new_tokens=64),
        grammar=model.tokenizers["trajectory"].grammar(2, 3),
    )
    assert all(len(row) == 12 for row in ids)
    assert all(bool((row[0::2] < 17).all()) and bool((row[1::2] >= 17).all()) for row in ids)
    with_penalty = float(task.loss(batch))
    model.lm_head.gamma = 0.0
    assert with_penalty > float(task.loss(batch))


def test_future_from_the_observed_state_zero_actions_are_constant_velocity() -> None:
    data = ForecastDataModule(num_train=8, num_val=8, num_test=0, num_heldout=0, history=4, horizon=5,
                              num_bins=17, action="acceleration", future_start="observed", batch_size=8,
                              motion=MotionConfig(num_agents=2))
    assert data.vocab["forecast_start"] == "observed"
    batch = next(iter(data.loader("val")))
    assert batch["history_ids"].shape == (8, 2 * 2 * 3) and batch["future_ids"].shape == (8, 2 * 2 * 5)
    model = _model(data).model
    fmt = model.task_format("forecast")
    observed, future = batch["positions"][:, :, :4], batch["positions"][:, :, 4:]
    paths = fmt.decode_scenes(model, batch["future_ids"], *fmt.future_state(observed))[:, :, 1:]
    assert float((paths - future).abs().max()) <= data.tokenizer.error_bound + 1e-9
    still = torch.tensor([8, 17 + 8]).repeat(2 * 5)[None].expand(8, -1)  # every action "no change"
    cv = fmt.decode_scenes(model, still, *fmt.future_state(observed))[:, :, 1:]
    assert torch.allclose(cv, constant_velocity(observed, 5))
    with pytest.raises(ValueError, match="observed positions"):
        fmt.future_state(observed[:, :, 0])


def test_perturbed_velocity_keeps_plain_cv_first() -> None:
    history = torch.randn(3, 2, 4, 2, dtype=torch.float64)
    futures = perturbed_velocity(history, 6, k=5)
    assert futures.shape == (3, 5, 2, 6, 2)
    assert torch.equal(futures[:, 0], constant_velocity(history, 6))
    assert torch.equal(futures, perturbed_velocity(history, 6, k=5))  # seeded


def test_a_tiny_model_beats_constant_velocity_on_unseen_scenes() -> None:
    """The learning check: on accelerating agents a tiny model trained for a few seconds forecasts unseen
    scenes better than constant velocity (its tokens are corrections to it)."""
    torch.manual_seed(0)
    motion = MotionConfig(num_agents=1, kinds=("accelerating",), acceleration=(0.1, 0.1), max_speed_cap=3.0)
    data = ForecastDataModule(motion=motion, num_train=256, num_val=64, num_test=0, num_heldout=0, history=4,
                              horizon=4, num_bins=17, action="acceleration", future_start="observed",
                              batch_size=32)
    task = _model(data, mean_futures=4)
    train_epochs(task, data, 5)  # epochs of 8 batches
    evaluation = task.evaluations["forecast"]
    scores = [o for batch in data.loader("val") for o in evaluation.step(task.model.eval(), batch)]
    metrics = evaluation.report(scores)
    assert metrics["ade"] < 0.7 * metrics["cv_ade"] and metrics["fde"] < metrics["cv_fde"], metrics


def test_module_learns_a_batch(data) -> None:
    model = _model(data)
    batch = next(iter(data.train_dataloader()))
    first, last = train_steps(model, batch, 25)
    assert last < 0.6 * first


def test_bad_setup(data) -> None:
    with pytest.raises(ValueError, match="head"):
        _model(data, head="softmax")
    with pytest.raises(ValueError, match="num_futures"):
        _model(data, num_futures=0)
    with pytest.raises(ValueError, match="history"):
        ForecastDataModule(history=1, num_train=1)


def test_config_fits_and_tests_through_the_cli(tmp_path) -> None:
    args = [
        "--config",
        "configs/forecast_motion.yaml",
        "--trainer.max_steps",
        "2",
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks",
        "[]",
        "--model.init_args.backbone.n_layer",
        "1",
        "--model.init_args.backbone.d_model",
        "32",
        "--model.init_args.num_futures",
        "2",
        "--model.init_args.head",
        "fourier",
        "--data.init_args.num_train",
        "16",
        "--data.init_args.num_val",
        "4",
        "--data.init_args.num_test",
        "4",
        "--data.init_args.num_heldout",
        "4",
        "--data.init_args.history",
        "3",
        "--data.init_args.horizon",
        "4",
        "--data.init_args.batch_size",
        "4",
        "--data.init_args.num_workers",
        "0",
    ]
    main(["fit", *args])
    main(["test", *args])
    metrics = "".join(p.read_text() for p in tmp_path.glob("**/metrics.csv"))
    for name in ("val/min_ade", "test/ade", "heldout/min_fde", "heldout/cv_ade", "test/joint_min_ade"):
        assert name in metrics
