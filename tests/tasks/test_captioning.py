"""Captioning end to end on tiny models: training, generation, export, resume, DDP, the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys

import lightning as L
import pytest
import torch
from training import train_steps

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.heads import DecodingConfig
from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tokenizers.image_encoder import ImageEncoderConfig

TINY = dict(
    backbone=TransformerConfig.from_name("tiny", max_seq_len=64),
    image_encoder=ImageEncoderConfig(source="cnn", image_size=32, cnn_width=16, cnn_grid=4),
    decoding=DecodingConfig(max_new_tokens=24),
    warmup_steps=2,
)


def _data() -> CaptioningDataModule:
    return CaptioningDataModule(
        num_train=64,
        num_val=16,
        num_test=16,
        num_heldout=16,
        bpe_vocab_size=300,
        image_size=32,
        batch_size=16,
    )


@pytest.fixture(scope="module")
def data():
    return _data()


def _trainer(tmp_path, **kw) -> L.Trainer:
    opts = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    return L.Trainer(**(opts | kw))


def test_loss_goes_down_and_captions_are_text(data):
    task = CaptioningModule(data.vocab, lr=3e-3, **TINY)
    batch = next(iter(data.train_dataloader()))
    first, last = train_steps(task, batch, 40)
    assert last < 0.5 * first
    captions = task.model.eval().caption(batch["images"][:4])
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)


def test_export_and_reload_give_identical_logits(tmp_path, data):
    model = CaptioningModule(data.vocab, **TINY).model.eval()
    batch = next(iter(data.loader("val")))
    model.save_pretrained(tmp_path / "release")
    assert {p.name for p in (tmp_path / "release").iterdir()} == {"config.json", "model.safetensors"}
    loaded = anytoken.load(tmp_path / "release")
    seq = model.formats["caption"].rows(model, batch)
    a = model.lm_head(model.hidden_states(seq, model.embed(seq, batch)))
    b = loaded.lm_head(loaded.hidden_states(seq, loaded.embed(seq, batch)))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.caption(batch["images"][:2]) == loaded.caption(batch["images"][:2])


def test_a_release_captions_without_lightning(tmp_path, data, repo_root):
    CaptioningModule(data.vocab, **TINY).export(tmp_path / "release")
    code = (f"import sys, torch, anytoken; m = anytoken.load({str(tmp_path / 'release')!r}); "
            "print(m.caption(torch.rand(2, 3, 32, 32))); assert 'lightning' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root)


def test_checkpoint_from_another_token_space_fails_loudly(tmp_path, data):
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(CaptioningModule(data.vocab, **TINY), datamodule=data)
    ckpt = torch.load(trainer.checkpoint_callback.best_model_path or _last(tmp_path), weights_only=False)
    other = CaptioningDataModule(
        num_train=64, num_val=0, num_test=0, num_heldout=0, bpe_vocab_size=280, image_size=32
    )
    with pytest.raises(ValueError, match="TokenSpace differs"):
        CaptioningModule(other.vocab, **TINY).on_load_checkpoint(ckpt)


def _last(root):
    return sorted(root.rglob("*.ckpt"))[-1]


def test_validation_and_test_report_caption_metrics(tmp_path, data, capsys):
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    model = CaptioningModule(data.vocab, **TINY)
    trainer.fit(model, datamodule=data)
    assert {"val/bleu4", "val/cider_d", "val/exact_match"} <= set(trainer.callback_metrics)
    results = trainer.test(model, datamodule=data, verbose=False)
    keys = set().union(*results)
    assert {"test/exact_match", "heldout/exact_match", "test/cider_d"} <= keys


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_resume_equals_uninterrupted_training(tmp_path, data):
    def run(root, ckpt=None, callbacks=()):
        L.seed_everything(0)
        trainer = _trainer(root, max_epochs=2, limit_val_batches=0, callbacks=list(callbacks))
        model = CaptioningModule(data.vocab, **TINY)
        trainer.fit(model, datamodule=data, ckpt_path=ckpt)
        return model, trainer

    straight, _ = run(tmp_path / "a")
    _, first = run(tmp_path / "b", callbacks=[_StopAfterFirstEpoch()])  # interrupted after epoch 1 of 2
    ckpt = tmp_path / "one_epoch.ckpt"
    first.save_checkpoint(ckpt)
    resumed, _ = run(tmp_path / "c", ckpt)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


class _SaveRankWeights(L.Callback):
    def __init__(self, rank_dir):
        self.rank_dir = rank_dir

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.state_dict(), self.rank_dir / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody holds now (a fixed default can collide with another run)
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(s.getsockname()[1]))
    trainer = _trainer(
        tmp_path,
        strategy="ddp_spawn",
        devices=2,
        max_steps=3,
        limit_val_batches=0,
        callbacks=[_SaveRankWeights(tmp_path)],
    )
    fresh = _data()  # loaders other tests used hold state that does not pickle to spawned processes
    trainer.fit(CaptioningModule(fresh.vocab, **TINY), datamodule=fresh)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=k)
    before = CaptioningModule(fresh.vocab, **TINY).state_dict()
    assert any(not torch.equal(before[k], w0[k]) for k in w0)  # it did train


def test_cli_fit_test_caption_and_errors(tmp_path, capsys, repo_root):
    from configs_shrink import shrink_config
    from PIL import Image

    from anytoken.cli import main

    config = str(shrink_config(repo_root / "configs/caption_scenes.yaml", tmp_path))
    main(["fit", "--config", config])
    ckpt = tmp_path / "runs/caption_scenes/checkpoints/last.ckpt"
    assert ckpt.is_file() and (tmp_path / "runs/caption_scenes/release/model.safetensors").is_file()
    capsys.readouterr()
    main(["test", "--config", config, "--ckpt_path", str(ckpt)])
    Image.new("L", (7, 3), 128).save(tmp_path / "gray.png")  # odd mode and size: converted, resized
    capsys.readouterr()
    main(["caption", str(tmp_path / "gray.png"), "--ckpt", str(ckpt), "--max-new-tokens", "5"])
    assert str(tmp_path / "gray.png") in capsys.readouterr().out
    main(["caption", str(tmp_path / "gray.png"), "--ckpt", str(tmp_path / "runs/caption_scenes/release")])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match="bad.png"):
        main(["caption", str(tmp_path / "bad.png"), "--ckpt", str(ckpt)])
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["caption", str(tmp_path / "gray.png"), "--ckpt", str(tmp_path / "missing.ckpt")])
    with pytest.raises(SystemExit):
        main(["fit", "--config", config, "--model.init_args.no_such_option", "1"])
    with pytest.raises(SystemExit, match="unknown command"):
        main(["train"])


def _write_coco(root, captions):
    import json

    from PIL import Image

    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, caption in enumerate(captions):
        Image.new("RGB", (40 + i, 30), (i * 40 % 255, 80, 120)).save(root / "images" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 40 + i, "height": 30})
        annotations.append({"id": 100 + i, "image_id": i, "caption": caption})
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return [str(root / "captions.json"), str(root / "images")]


def test_coco_format_trains_and_evaluates(tmp_path):
    pair = _write_coco(
        tmp_path, ["a dog on a sofa", "two cats", "a red bus on the road", "a man riding a horse"]
    )
    dm = CaptioningDataModule(
        source="coco", coco_train=pair, coco_val=pair, image_size=32, batch_size=2, bpe_vocab_size=280
    )
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=1)
    model = CaptioningModule(dm.vocab, **TINY)
    trainer.fit(model, datamodule=dm)
    assert "val/cider_d" in trainer.callback_metrics
    with pytest.raises(ValueError, match="coco_train and coco_val"):
        CaptioningDataModule(source="coco")


def test_empty_caption_is_a_clear_error(data):
    from PIL import Image

    item = {"image": Image.new("RGB", (8, 8)), "caption": "  ", "references": [""], "image_id": "x"}
    with pytest.raises(ValueError, match="empty caption for image 'x'"):
        data.collate([item])


def test_input_dropout_pads_only_target_inputs_while_training(data):
    model = CaptioningModule(data.vocab, input_dropout=0.5, **TINY).model
    seq = model.formats["caption"].rows(model, next(iter(data.train_dataloader())))
    fed = torch.nn.functional.pad(seq.targets[:, :-1] != -100, (1, 0))  # inputs that were targets
    dropped = model.train().dropped_inputs(seq) != seq.input_ids
    assert dropped.any() and not (dropped & ~fed).any()  # some caption inputs, never the prompt
    assert 0.3 < dropped.sum() / fed.sum() < 0.7
    assert torch.equal(model.eval().dropped_inputs(seq), seq.input_ids)


def test_unigram_input_noise_draws_caption_tokens_of_the_batch(data):
    model = CaptioningModule(data.vocab, input_dropout=0.5, input_noise="unigram", **TINY).model
    seq = model.formats["caption"].rows(model, next(iter(data.train_dataloader())))
    fed = torch.nn.functional.pad(seq.targets[:, :-1] != -100, (1, 0))
    noised = model.train().dropped_inputs(seq)
    changed = noised != seq.input_ids
    assert changed.any() and not (changed & ~fed).any()  # caption inputs only, never the prompt
    assert set(noised[fed].tolist()) <= set(seq.input_ids[fed].tolist())  # words of the batch, no <pad>
    assert torch.equal(model.eval().dropped_inputs(seq), seq.input_ids)
    with pytest.raises(ValueError, match="input_noise must be 'pad' or 'unigram'"):
        CaptioningModule(data.vocab, input_noise="blank", **TINY)


def test_validation_reports_unseen_pairs_apart_from_val(tmp_path):
    data = CaptioningDataModule(num_train=64, num_val=8, num_test=0, num_heldout=0, num_heldout_val=8,
                                bpe_vocab_size=300, image_size=32, batch_size=8)
    assert data.val_splits == ["val", "heldout_val"] and data.test_splits == []
    task = CaptioningModule(data.vocab, **TINY)
    metrics = _trainer(tmp_path).validate(task, datamodule=data, verbose=False)
    logged = {k for m in metrics for k in m}
    assert {"val/exact_match", "heldout_val/exact_match", "heldout_val/loss"} <= logged
