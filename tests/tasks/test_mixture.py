"""Any-to-any mixture on tiny models: templates equal the single-task layouts, packing keeps samples apart and
changes no loss, the mixture trains and reports every task's own metrics, interleaved prompts give the
modality their tag asks for, and a single-task model grows into the mixture with the same logits."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tasks.data.forecasting import ForecastDataModule
from anytoken.tasks.data.mixture import MixtureDataModule, union_vocab
from anytoken.tasks.data.pose import PoseDataModule
from anytoken.tasks.data.scenes import ScenesConfig
from anytoken.tasks.data.speech import espeak_path
from anytoken.tasks.data.stick_figures import StickFiguresConfig
from anytoken.tasks.data.vqa import VQADataModule
from anytoken.tasks.forecasting import ForecastingModule
from anytoken.tasks.mixture import MixtureModule
from anytoken.tasks.pose_estimation import PoseEstimationModule
from anytoken.models.templates import Template
from anytoken.models.growth import token_id_map
from anytoken.tasks.vqa import VQAModule
from anytoken.tokenizers.sequence import Embeds, Special, Tokens, build_sequences

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
        "module": "anytoken.tasks.captioning.CaptioningModule",
        "template": TEMPLATES["caption"],
    },
    "pose": {
        "datamodule": "anytoken.tasks.data.pose.PoseDataModule",
        "data_args": {"figures": {"image_size": 32}, **SIZES, "num_bins": 16, "image_size": 32,
                      "batch_size": 4},
        "module": "anytoken.tasks.pose_estimation.PoseEstimationModule",
        "template": TEMPLATES["pose"],
        "weight": 2.0,
    },
    "table": {
        "datamodule": "anytoken.tasks.data.tables.TableDataModule",
        "data_args": {"source": "iris", "n_bins": 4, "batch_size": 4},
        "module": "anytoken.tasks.table_prediction.TablePredictionModule",
        "module_args": {"target": "target", "decoding": {"max_new_tokens": 4}},
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
def model(data) -> MixtureModule:
    return MixtureModule(data.vocab, lr=3e-3, **MODEL)


def _pairs(data: MixtureDataModule) -> list[tuple[str, dict]]:
    return [(name, next(iter(dm.train_dataloader()))) for name, dm in data.datamodules.items()]


def _same_rows(a, b) -> None:
    for field in ("input_ids", "targets", "positions", "prefix_blocks", "embed_mask", "embed_sources"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_templates_give_exactly_the_single_task_layouts():
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
    classes = {"caption": CaptioningModule, "vqa": VQAModule, "pose": PoseEstimationModule,
               "forecast": ForecastingModule}
    for name, dm in dms.items():
        args = dict(MODEL) if name != "forecast" else {k: v for k, v in MODEL.items() if k != "image_encoder"}
        module = classes[name](dm.vocab, **args)
        batch = next(iter(dm.train_dataloader()))
        template = Template(TEMPLATES[name])
        tokens = module.image_encoder.num_tokens if module.image_encoder is not None else None
        for targets in (True, False):
            side = "right" if targets else "left"
            mine = build_sequences(template.samples(batch, targets, module.tokenizers, tokens), module.space,
                                   max_length=160, mask="prefix", padding_side=side)
            theirs = build_sequences(module.samples(batch, targets), module.space, max_length=160,
                                     mask="prefix", padding_side=side)
            _same_rows(mine, theirs)


def test_bad_templates_and_entries_fail_clearly():
    with pytest.raises(ValueError, match="exactly one target"):
        Template(["<bos>", {"tokens": "text", "from": "caption_ids"}])
    with pytest.raises(ValueError, match="special token"):
        Template(["bos", {"tokens": "text", "from": "x", "target": True}])
    with pytest.raises(ValueError, match="needs exactly one of"):
        Template([{"token": "text", "from": "x", "target": True}])
    with pytest.raises(ValueError, match="module .* or a template"):
        MixtureDataModule({"caption": {"datamodule": ENTRIES["caption"]["datamodule"]}})
    def vocab(size: int, name: str) -> dict:
        return {"token_space": {"modalities": {"text": size}}, "tokenizers": {"text": {"tokenizer": name}}}

    with pytest.raises(ValueError, match="share one tokenizer"):
        union_vocab({"a": vocab(10, "a"), "b": vocab(12, "b")})
    with pytest.raises(ValueError, match="tokenize 'text' differently"):
        union_vocab({"a": vocab(10, "a"), "b": vocab(10, "b")})


def test_vocab_is_the_union_of_every_task(data, model):
    space = model.space
    assert {"text", "image", "pose", "table", "trajectory"} <= set(space.modalities)
    assert {"caption", "pose_estimation", "table_predict", "forecast"} <= set(space.tasks)
    assert set(model.task_modules) == {"caption", "pose", "table"}
    assert set(model.templates) == {"caption", "pose", "forecast"}
    shared = {id(p) for p in model.backbone.parameters()}
    assert all(id(p) in shared for p in model.task("pose").backbone.parameters())
    assert not any(k.startswith("task_") for k in model.state_dict())  # no duplicated weights


def test_packed_rows_keep_samples_apart_and_give_the_padded_loss(data, model):
    pairs = _pairs(data)
    model.eval()
    packed = model.sequences(pairs)
    model.packing = False
    padded = model.sequences(pairs)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]
    assert int((packed.sample_ids > 0).sum()) == int((padded.sample_ids > 0).sum())
    mask = packed.attention_mask()[:, 0]  # (B, T, T)
    ids = packed.sample_ids
    across = (ids[:, :, None] != ids[:, None, :]) & (ids[:, :, None] > 0) & (ids[:, None, :] > 0)
    assert not bool((mask & across).any())
    with torch.no_grad():
        a = model.lm_loss(packed, model.hidden_states(packed, pairs))
        b = model.lm_loss(padded, model.hidden_states(padded, pairs))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_task_loss_weights_scale_their_target_tokens(data, model):
    pairs = [(n, b) for n, b in _pairs(data) if n in ("caption", "table")]
    seq = model.sequences(pairs)
    table = seq.modality_ids == model.space.modality_index("table")
    weights = seq.loss_weights[seq.targets >= 0]
    assert set(weights.unique().tolist()) == {0.5, 1.0}
    assert torch.all(seq.loss_weights[table & (seq.targets >= 0)] == 0.5)


def test_compiled_backbone_gives_the_eager_loss_on_packed_rows_of_any_length(data, model):
    compiled = MixtureModule(data.vocab, lr=3e-3, compile=True, **MODEL)
    compiled.load_state_dict(model.state_dict())
    compiled.configure_model()
    assert compiled.state_dict().keys() == model.state_dict().keys()  # checkpoints keep the eager keys
    pairs = _pairs(data)
    model.eval(), compiled.eval()
    for subset in (pairs, pairs[:2]):  # two packed shapes: one dynamic graph, no error on the second
        seq = model.sequences(subset)
        losses = [m.lm_loss(seq, m.hidden_states(seq, subset)) for m in (model, compiled)]
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)


def test_mixture_loss_goes_down(data, model):
    pairs = _pairs(data)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        seq = model.sequences(pairs)
        loss = model.lm_loss(seq, model.hidden_states(seq, pairs))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_fit_and_validate_report_every_task_side_by_side(tmp_path, data, model):
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    metrics = trainer.validate(model, datamodule=data, verbose=False)
    logged = {k for m in metrics for k in m}
    for key in ("val/caption/bleu4", "val/caption/loss", "val/pose/pck@0.1", "val/table/accuracy",
                "val/forecast/loss", "val/forecast/token_accuracy"):
        assert key in logged, (key, sorted(logged))
    assert not any("dataloader_idx" in k for k in logged)
    tested = {k for m in trainer.test(model, datamodule=data, verbose=False) for k in m}
    assert {"test/caption/bleu4", "test/pose/pck@0.1", "test/table/accuracy", "test/forecast/loss"} <= tested
    path = tmp_path / "release"
    model.export(path)
    again = MixtureModule.from_release(path)
    pairs = _pairs(data)
    seq = again.sequences(pairs)
    with torch.no_grad():
        torch.testing.assert_close(again.hidden_states(seq, pairs), model.eval().hidden_states(seq, pairs))


def test_interleaved_prompts_give_the_modality_the_tag_asks_for(data, model):
    model.eval()
    images = next(iter(data.datamodules["pose"].val_dataloader()))["images"][:2]  # (2, 3, 32, 32)
    n = model.image_encoder.num_tokens

    def prompt(tag: str, *extra) -> list:
        return [[Special("<bos>"), Embeds("image", n, i), *extra, Special(tag)] for i in range(2)]

    poses = model.complete(prompt("<pose_estimation>"), "pose", images)
    pose = model.task("pose").pose
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
    single = CaptioningModule(single_dm.vocab, **MODEL).eval()
    path = single.export(tmp_path / "caption")
    mixture = MixtureModule(data.vocab, init_from=str(path), **MODEL).eval()
    assert mixture.hparams.init_from is None
    batch = next(iter(single_dm.val_dataloader()))
    mixture.packing = False  # one row per sample, as the single-task model has them
    pairs = [("caption", batch)]
    with torch.no_grad():
        seq = single.sequences(batch)
        old = single.lm_head(single.hidden_states(seq, batch))  # (B, T, V_old)
        new_seq = mixture.sequences(pairs)
        new = mixture.lm_head(mixture.hidden_states(new_seq, pairs))  # (B, T, V_new)
    mapping = token_id_map(single.space, mixture.space)
    used = torch.nonzero(mapping >= 0).squeeze(1)
    assert torch.equal(mapping[seq.input_ids], new_seq.input_ids)
    valid = seq.sample_ids > 0
    torch.testing.assert_close(new[valid][:, mapping[used]], old[valid][:, used], rtol=1e-4, atol=1e-4)
    assert mixture.task("caption").caption(batch["images"][:2]) == single.caption(batch["images"][:2])


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
    "module": "anytoken.tasks.vqa.VQAModule",
    "module_args": {"question_modality": "audio", "decoding": {"max_new_tokens": 4}},
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
    model = MixtureModule(data.vocab, lr=3e-3, **{**MODEL, "backbone": backbone})
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    mine = model.media_tokenizers["audio"].state_dict()  # the codec that made the tokens:
    assert all(torch.equal(mine[k], v) for k, v in data.datamodules["spoken_vqa"].codec.state_dict().items())
    logged = {k for m in trainer.validate(model, datamodule=data, verbose=False) for k in m}
    assert {"val/spoken_vqa/acc", "val/caption/bleu4"} <= logged
    batch = next(iter(data.datamodules["spoken_vqa"].val_dataloader()))
    rows = [build_sequences(samples, model.space, max_length=512, mask="prefix") for samples in
            (model.task_samples("spoken_vqa", batch, True), model.task("spoken_vqa").samples(batch, True))]
    _same_rows(*rows)  # the YAML template is exactly VQAModule(question_modality="audio")'s layout
    question = model.tokenizers["audio"].codes_to_ids(batch["question_codes"][0])
    prompt = [Special("<bos>"), Embeds("image", model.image_encoder.num_tokens, 0), Special("<vqa>"),
              Tokens("audio", question, prefix=True)]
    (answer,) = model.eval().complete([prompt], "text", batch["images"][:1])
    assert isinstance(model.tokenizers["text"].decode(answer), str)
