"""Every task on several processes, and exact resume mid-epoch (docs/distributed.md).

Two CPU processes (DDP, gloo), launched as torchrun would: each rank reads a disjoint share of every task
per epoch and together they cover it (the sample ids each rank trained on are recorded), the mixture draws
the same tasks on both ranks at every step, and validation metrics are those of all ranks' outputs (equal
to one process validating everything). A run stopped at step N by an exception and resumed from its last
checkpoint ends with the weights of an uninterrupted run, for a single task (with input dropout, so the
random state must resume too) and for the mixture, from on-the-fly data and from token shards.
"""

from __future__ import annotations

import json
import os
import socket
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.multiprocessing as mp
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from test_mixture import ENTRIES, MODEL
from torch.utils.data import Dataset

from anytoken.backbone import TransformerConfig
from anytoken.heads import DecodingConfig
from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.base import TaskDataModule, split_loader
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tasks.data.forecasting import ForecastDataModule
from anytoken.tasks.data.mixture import MixtureDataModule
from anytoken.tasks.data.shard_writer import write_shards
from anytoken.tasks.data.synthetic.motion import MotionConfig
from anytoken.tasks.forecasting import ForecastingModule
from anytoken.tasks.mixture import MixtureModule
from anytoken.tokenizers.image_encoder import ImageEncoderConfig

FORECAST = dict(num_train=32, num_val=6, num_test=0, num_heldout=0, history=3, horizon=3, num_bins=9,
                batch_size=4, motion=MotionConfig(num_agents=2))
CAPTION = dict(num_train=16, num_val=0, num_test=0, num_heldout=0, bpe_vocab_size=300, image_size=32,
               batch_size=4)
TINY = dict(backbone=TransformerConfig.from_name("tiny", max_seq_len=64),
            image_encoder=ImageEncoderConfig(source="cnn", image_size=32, cnn_width=8, cnn_grid=2),
            decoding=DecodingConfig(max_new_tokens=12), warmup_steps=2)
SMALL = {"num_train": 16, "num_val": 4, "num_test": 4}
MIXTURE = {name: {**ENTRIES[name], "data_args": {**ENTRIES[name]["data_args"], **SMALL}}
           for name in ("caption", "forecast")}
EVAL_METRICS = ("val/ade", "val/fde", "val/cv_ade", "val/cv_fde")  # cv_*: of the data alone, never 0


# --- recording what each rank trained on ---------------------------------------------------------------
class _Indexed(Dataset):
    """``(index, item)`` of a dataset, so batches can say which samples they hold."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.data[index]


def _collate_with_ids(collate: Any, items: list[tuple[int, Any]]) -> dict[str, Any]:
    return {**collate([item for _, item in items]), "sample_ids": [index for index, _ in items]}


def _record_ids(dm: TaskDataModule) -> None:
    """Make ``dm``'s training batches carry ``sample_ids`` (the library's own ``split_loader`` reads them)."""
    evaluate = dm.loader

    def loader(split: str, train: bool = False):
        if not train:
            return evaluate(split)
        return split_loader(_Indexed(dm.splits[split]), dm.batch_size, partial(_collate_with_ids, dm.collate),
                            True, dm.seed, dm.num_workers)

    dm.loader = loader


class _Record(L.Callback):
    """Writes ``NAME_rankR.json``: per step, the sample ids (single task) or ``[task, ids]`` pairs (mixture)
    this rank trained on, and the metrics it ended with."""

    def __init__(self, out: Path, name: str) -> None:
        self.out, self.name, self.steps = out, name, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if isinstance(batch, dict):
            self.steps.append(batch["sample_ids"])
        else:
            self.steps.append([[task, b["sample_ids"]] for task, b in batch])

    def on_validation_end(self, trainer, pl_module):
        self._write(trainer)

    def on_train_end(self, trainer, pl_module):
        self._write(trainer)

    def _write(self, trainer):
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        path = self.out / f"{self.name}_rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"steps": self.steps, "metrics": metrics}))


# --- two processes, launched as torchrun launches them ---------------------------------------------------
def _forecaster(data: ForecastDataModule) -> ForecastingModule:
    return ForecastingModule(data.vocab, backbone=TransformerConfig.from_name("tiny", max_seq_len=64),
                             num_futures=1, warmup_steps=2)


def _trainer(root: Path, **kw: Any) -> L.Trainer:
    opts = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=root, num_sanity_val_steps=0,
                enable_checkpointing=False)
    return L.Trainer(**(opts | kw))


def _worker(rank: int, out: Path, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    ddp = dict(strategy="ddp", devices=2)
    L.seed_everything(0)
    forecasts = ForecastDataModule(**FORECAST)
    _record_ids(forecasts)
    model = _forecaster(forecasts)
    trainer = _trainer(out, max_epochs=1, limit_val_batches=0, callbacks=[_Record(out, "forecast")], **ddp)
    trainer.fit(model, datamodule=forecasts)
    if rank == 0:
        torch.save(model.state_dict(), out / "forecast_weights.pt")
    _trainer(out, callbacks=[_Record(out, "validate")], **ddp).validate(model, datamodule=forecasts)

    mixture = MixtureDataModule(MIXTURE, tasks_per_step=2, steps_per_epoch=3)
    for dm in mixture.datamodules.values():
        _record_ids(dm)
    module = MixtureModule(mixture.vocab, **MODEL)
    try:
        _trainer(out, max_steps=1, **ddp).fit(module, datamodule=mixture)
    except MisconfigurationException as err:  # a step without images would leave the image encoder out
        (out / f"mixture_error_rank{rank}.txt").write_text(str(err))
    ddp["strategy"] = "ddp_find_unused_parameters_true"
    trainer = _trainer(out, max_steps=6, limit_val_batches=0, callbacks=[_Record(out, "mixture")], **ddp)
    trainer.fit(module, datamodule=mixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(out, _free_port()), nprocs=2, start_method="spawn")
    runs = {name: [json.loads((out / f"{name}_rank{r}.json").read_text()) for r in (0, 1)]
            for name in ("forecast", "validate", "mixture")}
    return out, runs


def _disjoint_and_covering(shares: list[list[int]], n: int) -> None:
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(n))


def test_each_rank_reads_a_disjoint_share_and_together_they_cover_the_epoch(two_ranks):
    _, runs = two_ranks
    steps = [run["steps"] for run in runs["forecast"]]
    assert len(steps[0]) == len(steps[1]) == FORECAST["num_train"] // (2 * FORECAST["batch_size"])
    _disjoint_and_covering([sum(s, []) for s in steps], FORECAST["num_train"])


def test_the_mixture_draws_the_same_tasks_on_every_rank_and_shards_each_task(two_ranks):
    _, runs = two_ranks
    steps = [run["steps"] for run in runs["mixture"]]
    assert len(steps[0]) == 6  # two epochs
    tasks = [[[task for task, _ in step] for step in s] for s in steps]
    assert tasks[0] == tasks[1] and len({tuple(t) for t in tasks[0]}) > 1  # one schedule, not a fixed draw
    per_pass = SMALL["num_train"] // 2  # each rank's share of a task: one pass of its loader
    for task in MIXTURE:
        ids = [[i for step in s for name, batch in step if name == task for i in batch] for s in steps]
        assert len(ids[0]) >= per_pass, f"{task} was drawn too rarely to finish a pass"
        for start in range(0, len(ids[0]) - per_pass + 1, per_pass):  # every finished pass
            _disjoint_and_covering([share[start:start + per_pass] for share in ids], SMALL["num_train"])


def test_a_mixture_on_plain_ddp_is_refused_with_the_strategy_it_needs(two_ranks):
    out, _ = two_ranks
    for rank in (0, 1):
        assert "ddp_find_unused_parameters_true" in (out / f"mixture_error_rank{rank}.txt").read_text()


def test_validation_metrics_are_those_of_every_ranks_outputs(two_ranks, tmp_path, one_thread):
    out, runs = two_ranks
    ranks = [run["metrics"] for run in runs["validate"]]
    assert ranks[0] == ranks[1]
    data = ForecastDataModule(**FORECAST)
    model = _forecaster(data)
    model.load_state_dict(torch.load(out / "forecast_weights.pt"))
    alone = _trainer(tmp_path).validate(model, datamodule=data, verbose=False)[0]
    for key in EVAL_METRICS:
        assert ranks[0][key] == pytest.approx(alone[key], rel=1e-6), key


# --- exact resume mid-epoch ---------------------------------------------------------------------------
class _Killed(Exception):
    pass


class _KillAt(L.Callback):
    """Raises at the end of step ``step``: the run stops without a clean end (no checkpoint at the kill)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise _Killed


def _resume_equals_straight(tmp_path: Path, make: Any, steps: int, kill_at: int, every: int) -> dict:
    """Trains ``make()`` (module, datamodule) ``steps`` steps straight; again, killed after ``kill_at`` steps
    and resumed from its last checkpoint (every ``every`` steps); asserts equal weights. The checkpoint."""
    def run(root: Path, ckpt: Path | None = None, callbacks: tuple = ()) -> L.LightningModule:
        L.seed_everything(0)
        module, data = make()
        trainer = _trainer(root, max_steps=steps, limit_val_batches=0, callbacks=list(callbacks),
                           enable_checkpointing=bool(callbacks))
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        return module

    straight = run(tmp_path / "straight")
    saver = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=every, save_last=True, save_top_k=0)
    with pytest.raises(_Killed):
        run(tmp_path / "killed", callbacks=(saver, _KillAt(kill_at)))
    resumed = run(tmp_path / "resumed", tmp_path / "ckpt/last.ckpt")
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    return torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)


@pytest.mark.parametrize("source", ["on_the_fly", "shards"])
def test_a_single_task_killed_mid_epoch_resumes_exactly(source, tmp_path, one_thread):
    shards = str(tmp_path / "shards") if source == "shards" else None
    if shards:
        write_shards(CaptioningDataModule(**CAPTION), shards, progress=False)

    def make():
        data = CaptioningDataModule(**CAPTION, shards=shards)  # 4 steps an epoch
        return CaptioningModule(data.vocab, input_dropout=0.3, **TINY), data

    ckpt = _resume_equals_straight(tmp_path, make, steps=7, kill_at=6, every=3)  # resumed mid-epoch 0
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 3}]


@pytest.mark.parametrize("source", ["on_the_fly", "shards"])
def test_the_mixture_killed_mid_epoch_resumes_exactly(source, tmp_path, one_thread):
    entries = {name: {**e, "data_args": {**e["data_args"], "num_train": 8}}  # 2 batches a task's pass
               for name, e in MIXTURE.items()}
    shards = str(tmp_path / "shards") if source == "shards" else None
    if shards:
        for name, dm in MixtureDataModule(entries).datamodules.items():  # what `anytoken tokenize` writes
            write_shards(dm, tmp_path / "shards" / name, progress=False)

    def make():
        data = MixtureDataModule(entries, tasks_per_step=2, steps_per_epoch=4, shards=shards)
        return MixtureModule(data.vocab, **MODEL), data

    ckpt = _resume_equals_straight(tmp_path, make, steps=7, kill_at=6, every=3)
    (stream,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (stream["epoch"], stream["steps"]) == (0, 3) and set(stream["tasks"]) == set(MIXTURE)
