"""Any-to-any mixture on tiny models: templates equal the formats' layouts, packing keeps samples apart and
changes no loss, the mixture trains and reports every task's own metrics, interleaved prompts give the
modality their tag asks for, and a single-task model grows into the mixture with the same logits."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

import anytoken
from anytoken.models import AnytokenModel, TemplateFormat
from anytoken.models.growth import token_id_map
from anytoken.models.templates import Template
from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tasks.data.forecasting import ForecastDataModule
from anytoken.tasks.data.mixture import MixtureDataModule, union_vocab
from anytoken.tasks.data.pose import PoseDataModule
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import espeak_path
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig
from anytoken.tasks.data.vqa import VQADataModule
from anytoken.tasks.mixture import MixtureModule
from anytoken.tokenizers.sequence import Embeds, SequenceBatch, Special, Tokens, build_sequences

SCENES = {"image_size": 32, "min_objects": 1, "max_objects": 1, "seed": 0}
SIZES = {"num_train": 24, "num_val": 8, "num_test": 8}
IMAGE = {"embeds": "image", "from": "images"}
TEMPLATES = {
    "caption": ["<bos>", IMAGE, "<caption>", {"tokens": "text", "from": "caption_ids", "target": True}],
    "vqa": ["<bos>", IMAGE | {"index": "image_index"}, "<vqa>", {"tokens": "text", "from": "question_tokens"},
            {"tokens": "text", "from": "answer_tokens", "target": True}],
    "pose": ["<bos>", IMAGE, "<pose_estimation>", {"tokens": "pose", "from": "pose_ids", "target": True}],
    "forecast": ["<bos>", {"tokens": "trajectory", "from": "history_ids", "prefix": True}, "<forecast>",
                 {"tokens": "trajectory", "from": "future_ids", "target": True}],
}
ENTRIES = {
    "caption": {
        "datamodule": "anytoken.tasks.data.captioning.CaptioningDataModule",
        "data_args": {"scenes": SCENES, **SIZES, "num_heldout": 0, "bpe_vocab_size": 300, "image_size": 32,
                      "batch_size": 4},
        "format": {"kind": "caption"},
        "template": TEMPLATES["caption"],
    },
    "pose": {
        "datamodule": "anytoken.tasks.data.pose.PoseDataModule",
        "data_args": {"figures": {"image_size": 32}, **SIZES, "num_bins": 16, "image_size": 32,
                      "batch_size": 4},
        "format": {"kind": "pose_estimation"},
        "template": TEMPLATES["pose"],
        "weight": 2.0,
    },
    "table": {
        "datamodule": "anytoken.tasks.data.tables.TableDataModule",
        "data_args": {"source": "iris", "n_bins": 4, "batch_size": 4},
        "format": {"kind": "table_prediction", "target": "target"},  # no template: the format's samples
        "loss_weight": 0.5,
    },
    "forecast": {  # template only: scored by loss and token accuracy
        "datamodule": "anytoken.tasks.data.forecasting.ForecastDataModule",
        "data_args": {"motion": {"num_agents": 2}, **SIZES, "num_heldout": 0, "history": 3, "horizon": 3,
                      "num_bins": 9, "batch_size": 4},
        "template": TEMPLATES["forecast"],
    },
}
MODEL = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 160},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 2},
    "decoding": {"max_new_tokens": 8},
    "warmup_steps": 2,
}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def data() -> MixtureDataModule:
    return MixtureDataModule(ENTRIES, tasks_per_step=3, steps_per_epoch=4)


@pytest.fixture
def task(data) -> MixtureModule:
    return MixtureModule(data.vocab, lr=3e-3, **MODEL)


def _pairs(data: MixtureDataModule) -> list[tuple[str, dict]]:
    return [(name, next(iter(dm.train_dataloader()))) for name, dm in data.datamodules.items()]


def _loss(task: MixtureModule, seq: SequenceBatch, media: dict) -> torch.Tensor:
    model = task.model
    return model.lm_loss(seq, model.hidden_states(seq, model.embed(seq, media)))


def _same_rows(a, b) -> None:
    for field in ("input_ids", "targets", "positions", "prefix_blocks", "embed_mask", "embed_sources"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_templates_give_exactly_the_formats_layouts():
    dms = {
        "caption": CaptioningDataModule(scenes=ScenesConfig(**SCENES), num_train=16, num_val=4, num_test=4,
                                        num_heldout=0, bpe_vocab_size=300, image_size=32, batch_size=4),
        "vqa": VQADataModule(
            scenes=ScenesConfig(**SCENES), num_train=8, num_val=4, num_test=4, num_heldout=0, num_answers=8,
            bpe_vocab_size=300, image_size=32, batch_size=2),
        "pose": PoseDataModule(
            figures=StickFiguresConfig(image_size=32), num_train=8, num_val=4, num_test=4, num_bins=16,
            image_size=32, batch_size=4),
        "forecast": ForecastDataModule(
            num_train=8, num_val=4, num_test=4, num_heldout=0, history=3, horizon=3, batch_size=4),
    }
    kinds = {"caption": "caption", "vqa": "vqa", "pose": "pose_estimation", "forecast": "forecast"}
    for name, dm in dms.items():
        encoder = MODEL["image_encoder"] if name != "forecast" else None
        model = AnytokenModel(dm.vocab, {name: {"kind": kinds[name]}}, MODEL["backbone"], encoder)
        batch = next(iter(dm.train_dataloader()))
        template = TemplateFormat(TEMPLATES[name])
        template.bind(model)
        for targets in (True, False):
            side = "right" if targets else "left"
            mine = build_sequences(template.samples(model, batch, targets), model.space, max_length=160,
                                   mask="prefix", padding_side=side)
            theirs = build_sequences(model.formats[name].samples(model, batch, targets), model.space,
                                     max_length=160, mask="prefix", padding_side=side)
            _same_rows(mine, theirs)


def test_bad_templates_and_entries_fail_clearly():
    with pytest.raises(ValueError, match="exactly one target"):
        Template(["<bos>", {"tokens": "text", "from": "caption_ids"}])
    with pytest.raises(ValueError, match="special token"):
        Template(["bos", {"tokens": "text", "from": "x", "target": True}])
    with pytest.raises(ValueError, match="needs exactly one of"):
        Template([{"token": "text", "from": "x", "target": True}])
    with pytest.raises(ValueError, match="'map' must be one of \\['codes_to_ids'\\]"):  # data names no method
        Template([{"tokens": "audio", "from": "x", "map": "save_pretrained", "target": True}])
    datamodule = ENTRIES["caption"]["datamodule"]
    with pytest.raises(ValueError, match="format .* or a template"):
        MixtureDataModule({"caption": {"datamodule": datamodule}})
    with pytest.raises(ValueError, match="only the keys"):  # task classes are no longer named by entries
        MixtureDataModule({"caption": {"datamodule": datamodule, "module": "anytoken.tasks.vqa.VQAModule"}})
    with pytest.raises(ValueError, match="task 'caption': unknown task format 'captioning'"):
        MixtureDataModule({"caption": {"datamodule": datamodule, "format": {"kind": "captioning"}}})
    with pytest.raises(ValueError, match="task 'caption': bad settings for the 'caption' format"):
        MixtureDataModule({"caption": {"datamodule": datamodule, "format": {"kind": "caption", "head": "x"}}})
    with pytest.raises(ValueError, match="not a TaskDataModule"):
        MixtureDataModule({"caption": {"datamodule": "lightning.LightningDataModule",
                                       "format": {"kind": "caption"}}})

    def vocab(size: int, name: str) -> dict:
        return {"token_space": {"modalities": {"text": size}}, "tokenizers": {"text": {"tokenizer": name}}}

    with pytest.raises(ValueError, match="share one tokenizer"):
        union_vocab({"a": vocab(10, "a"), "b": vocab(12, "b")})
    with pytest.raises(ValueError, match="tokenize 'text' differently"):
        union_vocab({"a": vocab(10, "a"), "b": vocab(10, "b")})


def test_vocab_is_the_union_of_every_task(data, task):
    space = task.model.space
    assert {"text", "image", "pose", "table", "trajectory"} <= set(space.modalities)
    assert {"caption", "pose_estimation", "table_predict", "forecast"} <= set(space.tasks)
    kinds = {name: fmt.kind for name, fmt in task.model.formats.items()}
    assert kinds == {"caption": "caption", "pose": "pose_estimation", "table": "table_prediction",
                     "forecast": "template"}
    trained_from = {name for name, fmt in task.layouts.items() if isinstance(fmt, TemplateFormat)}
    assert trained_from == {"caption", "pose", "forecast"}
    assert task.layouts["table"] is task.model.formats["table"]
    assert set(data.vocab["tasks"]["table"]) == {"format", "template", "loss_weight"}
    assert "tasks" not in task.model.vocab and "datamodule" not in json.dumps(task.model.config())
    assert not any(k.startswith("model.formats.") for k in task.state_dict())  # no duplicated weights


def test_a_format_with_a_head_of_its_own_is_for_single_task_models(data):
    fourier = {"format": {"kind": "forecast", "head": "fourier"}, "template": TEMPLATES["forecast"]}
    with pytest.raises(ValueError, match="shares one LM head, but a task's format set a FourierHead"):
        MixtureModule(data.vocab | {"tasks": data.vocab["tasks"] | {"forecast": fourier}}, **MODEL)


def test_packed_rows_keep_samples_apart_and_give_the_padded_loss(data, task):
    pairs = _pairs(data)
    task.eval()
    packed, media = task.rows(pairs)
    task.packing = False
    padded, _ = task.rows(pairs)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]
    assert int((packed.sample_ids > 0).sum()) == int((padded.sample_ids > 0).sum())
    mask = packed.attention_mask()[:, 0]  # (B, T, T)
    ids = packed.sample_ids
    across = (ids[:, :, None] != ids[:, None, :]) & (ids[:, :, None] > 0) & (ids[:, None, :] > 0)
    assert not bool((mask & across).any())
    with torch.no_grad():
        a, b = _loss(task, packed, media), _loss(task, padded, media)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_task_loss_weights_scale_their_target_tokens(data, task):
    pairs = [(n, b) for n, b in _pairs(data) if n in ("caption", "table")]
    seq, _ = task.rows(pairs)
    table = seq.modality_ids == task.model.space.modality_index("table")
    weights = seq.loss_weights[seq.targets >= 0]
    assert set(weights.unique().tolist()) == {0.5, 1.0}
    assert torch.all(seq.loss_weights[table & (seq.targets >= 0)] == 0.5)


def test_compiled_backbone_gives_the_eager_loss_on_packed_rows_of_any_length(data, task):
    compiled = MixtureModule(data.vocab, lr=3e-3, compile=True, **MODEL)
    compiled.load_state_dict(task.state_dict())
    compiled.configure_model()
    assert compiled.state_dict().keys() == task.state_dict().keys()  # checkpoints keep the eager keys
    pairs = _pairs(data)
    task.eval(), compiled.eval()
    for subset in (pairs, pairs[:2]):  # two packed shapes: one dynamic graph, no error on the second
        seq, media = task.rows(subset)
        losses = [_loss(m, seq, media) for m in (task, compiled)]
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)


def test_mixture_loss_goes_down(data, task):
    pairs = _pairs(data)
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = _loss(task, *task.rows(pairs))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_fit_and_validate_report_every_task_side_by_side(tmp_path, data, task):
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=data)
    metrics = trainer.validate(task, datamodule=data, verbose=False)
    logged = {k for m in metrics for k in m}
    for key in ("val/caption/bleu4", "val/caption/loss", "val/pose/pck@0.1", "val/table/accuracy",
                "val/forecast/loss", "val/forecast/token_accuracy"):
        assert key in logged, (key, sorted(logged))
    assert not any("dataloader_idx" in k for k in logged)
    tested = {k for m in trainer.test(task, datamodule=data, verbose=False) for k in m}
    assert {"test/caption/bleu4", "test/pose/pck@0.1", "test/table/accuracy", "test/forecast/loss"} <= tested
    again = anytoken.load(task.export(tmp_path / "release"))
    seq, media = task.rows(_pairs(data))
    with torch.no_grad():
        model = task.model.eval()
        torch.testing.assert_close(again.hidden_states(seq, again.embed(seq, media)),
                                   model.hidden_states(seq, model.embed(seq, media)))


def test_interleaved_prompts_give_the_modality_the_tag_asks_for(data, task):
    model = task.model.eval()
    images = next(iter(data.datamodules["pose"].loader("val")))["images"][:2]  # (2, 3, 32, 32)
    n = model.image_tokens

    def prompt(tag: str, *extra) -> list:
        return [[Special("<bos>"), Embeds("image", n, i), *extra, Special(tag)] for i in range(2)]

    poses = model.complete(prompt("<pose_estimation>"), "pose", images)
    pose = model.tokenizers["pose"]
    assert all(len(p) == pose.num_tokens for p in poses)
    assert pose.decode(torch.stack(poses)).shape == (2, pose.num_keypoints, 3)
    captions = model.complete(prompt("<caption>"), "text", images)
    assert all(isinstance(model.tokenizers["text"].decode(c), str) for c in captions)
    question = model.tokenizers["text"].encode("what color is the circle?")
    answers = model.complete(prompt("<caption>", Tokens("text", question)), "text", images)
    assert len(answers) == 2
    with pytest.raises(ValueError, match="unknown special token"):
        model.complete(prompt("<speak>"), "text", images)


def test_single_task_model_grows_into_the_mixture_with_the_same_logits(tmp_path, data):
    single_dm = data.datamodules["caption"]  # the mixture's text tokenizer is this task's
    single = CaptioningModule(single_dm.vocab, **MODEL).model.eval()
    path = single.save_pretrained(tmp_path / "caption")
    mixture = MixtureModule(data.vocab, init_from=str(path), **MODEL).eval()
    assert mixture.hparams.init_from is None
    batch = next(iter(single_dm.loader("val")))
    mixture.packing = False  # one row per sample, as the single-task model has them
    with torch.no_grad():
        seq = single.formats["caption"].rows(single, batch)
        old = single.lm_head(single.hidden_states(seq, single.embed(seq, batch)))  # (B, T, V_old)
        new_seq, media = mixture.rows([("caption", batch)])
        model = mixture.model
        new = model.lm_head(model.hidden_states(new_seq, model.embed(new_seq, media)))  # (B, T, V_new)
    mapping = token_id_map(single.space, model.space)
    used = torch.nonzero(mapping >= 0).squeeze(1)
    assert torch.equal(mapping[seq.input_ids], new_seq.input_ids)
    valid = seq.sample_ids > 0
    torch.testing.assert_close(new[valid][:, mapping[used]], old[valid][:, used], rtol=1e-4, atol=1e-4)
    assert model.caption(batch["images"][:2]) == single.caption(batch["images"][:2])


TINY_CODEC = {
    "tokenizer": "audio_codec",
    "config": dict(sample_rate=8000, strides=[10, 20], encoder_channels=4, decoder_channels=16,
                   dilations=[1], latent_dim=8, codebook_size=16, num_quantizers=1, loss_scales=[64, 128]),
}
SPOKEN_VQA = {  # a spoken question about an image, answered in text: a YAML-able entry, no new code
    "datamodule": "anytoken.tasks.data.spoken_vqa.SpokenVQADataModule",
    "shared": {"text": "tokenizer_path"},
    "data_args": {"scenes": SCENES, **SIZES, "num_heldout": 0, "image_size": 32, "batch_size": 2,
                  "codec": TINY_CODEC},
    "format": {"kind": "vqa", "question_modality": "audio"},
    "template": ["<bos>", IMAGE | {"index": "image_index"}, "<vqa>",
                 {"tokens": "audio", "from": "question_codes", "map": "codes_to_ids", "prefix": True},
                 {"tokens": "text", "from": "answer_tokens", "target": True}],
}


@pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_a_spoken_question_about_an_image_gets_a_text_answer(tmp_path):
    torch.manual_seed(0)
    data = MixtureDataModule({"caption": ENTRIES["caption"], "spoken_vqa": SPOKEN_VQA}, tasks_per_step=2,
                             steps_per_epoch=2)
    backbone = {**MODEL["backbone"], "max_seq_len": 512}  # a spoken question is ~60 audio tokens
    task = MixtureModule(data.vocab, lr=3e-3, **{**MODEL, "backbone": backbone})
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(task, datamodule=data)
    model = task.model
    mine = model.media_tokenizers["audio"].state_dict()  # the codec that made the tokens:
    assert all(torch.equal(mine[k], v) for k, v in data.datamodules["spoken_vqa"].codec.state_dict().items())
    logged = {k for m in trainer.validate(task, datamodule=data, verbose=False) for k in m}
    assert {"val/spoken_vqa/acc", "val/caption/bleu4"} <= logged
    batch = next(iter(data.datamodules["spoken_vqa"].loader("val")))
    rows = [build_sequences(samples, model.space, max_length=512, mask="prefix") for samples in
            (task.layouts["spoken_vqa"].samples(model, batch, True),
             model.formats["spoken_vqa"].samples(model, batch, True))]
    _same_rows(*rows)  # the YAML template is exactly the vqa format's layout (question_modality="audio")
    question = model.tokenizers["audio"].codes_to_ids(batch["question_codes"][0])
    prompt = [Special("<bos>"), Embeds("image", model.image_tokens, 0), Special("<vqa>"),
              Tokens("audio", question, prefix=True)]
    (answer,) = model.eval().complete([prompt], "text", batch["images"][:1])
    assert isinstance(model.tokenizers["text"].decode(answer), str)
