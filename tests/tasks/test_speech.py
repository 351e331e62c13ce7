"""Spoken data (espeak-ng, alsa-utils), audio metrics, and the speech tasks in both audio layouts, on a
codec the tokenizer-training task trained first (the two-command flow of configs/speech_*.yaml)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import anytoken
from anytoken.tasks.data.audio_clips import AudioClipsDataModule
from anytoken.tasks.data.mixture import MixtureDataModule
from anytoken.tasks.data.speech import SpeechDataModule
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import (
    HELDOUT_VOICES,
    TRAIN_VOICES,
    Utterance,
    alsa_words,
    espeak_path,
    spoken_scenes,
    synthesize,
)
from anytoken.tasks.metrics.audio import error_rates, mel_distance, normalize_transcript, si_snr
from anytoken.tasks.mixture import MixtureModule
from anytoken.tasks.speech import SpeechToTextModule, TextToSpeechModule
from anytoken.tasks.tokenizer_training import ExportTokenizer, TokenizerTrainingModule
from anytoken.tokenizers.audio_codec import AudioCodecTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
needs_espeak = pytest.mark.skipif(
    espeak_path() is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)
CODEC = {
    "tokenizer": "audio_codec",
    "config": dict(
        sample_rate=8000,
        strides=[10, 20],
        encoder_channels=4,
        decoder_channels=16,
        dilations=[1],
        activation="elu",
        latent_dim=8,
        codebook_size=16,
        num_quantizers=2,
        loss_scales=[64, 128],
    ),
}
BACKBONE = {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 256}


def test_error_rates_and_audio_metrics() -> None:
    scores = error_rates(["a red Square", "a blue circle"], ["a red square.", "a green circle"])
    assert scores["wer"] == pytest.approx(1 / 6) and scores["exact"] == 0.5 and 0 < scores["cer"] < 0.5
    assert normalize_transcript("  A Red, square! ") == "a red square"
    with pytest.raises(ValueError, match="as many"):
        error_rates(["a"], [])
    t = torch.arange(8000) / 8000
    x = torch.sin(2 * math.pi * 200 * t)[None]
    assert si_snr(x, x + 0.01 * torch.randn_like(x)) > 30 and si_snr(x, torch.randn_like(x)) < 0
    assert mel_distance(x, x, 8000) == 0 and mel_distance(x, torch.randn_like(x), 8000) > 1


def test_spoken_scenes_are_deterministic_and_hold_out_voices() -> None:
    train = spoken_scenes("train", 20)
    assert train == spoken_scenes("train", 20) and {u.voice for u in train} <= set(TRAIN_VOICES)
    assert {u.voice for u in spoken_scenes("heldout", 10)} <= set(HELDOUT_VOICES)
    assert all(u.text.startswith("a ") for u in train)


@needs_espeak
def test_espeak_synthesis() -> None:
    wave = synthesize(Utterance("a small red square"), sample_rate=16000)
    assert wave.dim() == 2 and wave.shape[0] == 1 and 0.5 < wave.shape[1] / 16000 < 3
    assert 0.05 < float(wave.abs().max()) <= 1
    with pytest.raises(ValueError, match="empty"):
        synthesize(Utterance("  "))


@pytest.mark.skipif(
    not alsa_words(), reason="alsa-utils' recorded words are not installed (apt-get install alsa-utils)"
)
def test_alsa_words_have_transcripts() -> None:
    words = dict((p.stem, t) for p, t in alsa_words())
    assert words["Front_Left"] == "front left" and "Noise" not in words


def train_codec(directory: Path) -> None:
    """The first command (``anytoken fit --config configs/codec_speech16k.yaml``) in small: the tokenizer-
    training task fits the tiny codec for 2 steps on spoken scenes and writes it to ``directory``."""
    data = AudioClipsDataModule(sample_rate=8000, clip_seconds=0.5, num_train=4, num_utterances=4, num_val=0,
                                scenes=ScenesConfig(min_objects=1, max_objects=1), batch_size=2)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(directory.parent), callbacks=[ExportTokenizer(str(directory))])
    trainer.fit(TokenizerTrainingModule(CODEC, warmup_steps=1, num_samples=0), datamodule=data)


@pytest.fixture(scope="module")
def speech_args(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """SpeechDataModule arguments: spoken scenes encoded by a tiny codec trained for 2 steps first."""
    if espeak_path() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("speech")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_codec(root / "codec")
    torch.set_num_threads(threads)
    yield {"codec_path": str(root / "codec"), "scenes": {"min_objects": 1, "max_objects": 1}, "num_train": 6,
           "num_val": 2, "num_test": 2, "num_heldout": 2, "bpe_vocab_size": 270, "batch_size": 2,
           "cache_dir": str(root / "cache")}


@pytest.fixture(scope="module")
def speech_data(speech_args: dict[str, Any]) -> Iterator[SpeechDataModule]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield SpeechDataModule(**speech_args | {"scenes": ScenesConfig(**speech_args["scenes"])})
    torch.set_num_threads(threads)


def test_data_module_pipeline(speech_data: SpeechDataModule, speech_args: dict[str, Any], tmp_path) -> None:
    data = speech_data
    assert (data.codec.sample_rate, data.codec.num_codebooks) == (8000, 2)
    saved = AudioCodecTokenizer.from_pretrained(speech_args["codec_path"])  # the trained codec is read
    assert torch.equal(data.codec.decoder[0].conv.weight, saved.decoder[0].conv.weight)
    item = data.splits["train"][0]
    assert item["codes"].shape[0] == 2 and item["codes"].dtype == torch.long and item["text"].startswith("a ")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"texts", "text_ids", "codes", "ids"} and len(batch["codes"]) == 2
    assert data.vocab["token_space"]["modalities"]["audio"] == 32
    assert data.test_splits[:2] == ["test", "heldout"]  # then alsa, when alsa-utils is installed
    with pytest.raises(ValueError, match="no codec at .*codec_speech16k.yaml"):
        SpeechDataModule(codec_path=str(tmp_path / "missing"), num_train=1)
    with pytest.raises(ValueError, match="not both"):
        SpeechDataModule(codec_path=speech_args["codec_path"], codec=CODEC, num_train=1)
    sizes = {"num_train": 2, "num_val": 0, "num_test": 0, "num_heldout": 0}
    untrained = SpeechDataModule(codec=CODEC, num_codebooks=1, bpe_vocab_size=270, **sizes,
                                 scenes=ScenesConfig(min_objects=1, max_objects=1))
    assert untrained.codec.num_codebooks == 1 and untrained.splits["train"][0]["codes"].shape[0] == 1
    assert untrained.vocab["token_space"]["modalities"]["audio"] == 16


def _trainer(tmp_path) -> L.Trainer:
    return L.Trainer(max_steps=2, limit_val_batches=1, val_check_interval=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=str(tmp_path))


@pytest.mark.parametrize("layout", ["flatten", "delay"])
def test_speech_to_text_trains_generates_and_reloads(
    speech_data: SpeechDataModule, layout: str, tmp_path
) -> None:
    task = SpeechToTextModule(
        vocab=speech_data.vocab,
        backbone=BACKBONE,
        audio_layout=layout,
        warmup_steps=1,
        decoding={"max_new_tokens": 6},
    )
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=speech_data)
    assert "val/wer" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics
    model = task.model.eval()
    assert torch.equal(model.media_tokenizers["audio"].decoder[0].conv.weight,
                       speech_data.codec.decoder[0].conv.weight)
    fmt = model.task_format("transcribe")
    texts = fmt.transcribe(model, [speech_data.splits["test"][0]["codes"]])
    assert len(texts) == 1 and isinstance(texts[0], str)
    task.export(tmp_path / "release")
    loaded = anytoken.load(tmp_path / "release")
    mine = loaded.task_format("transcribe")
    batch = speech_data.collate(speech_data.splits["test"])
    torch.testing.assert_close(mine.loss(loaded, batch), fmt.loss(model, batch))  # the codec travels too
    assert mine.transcribe(loaded, batch["codes"]) == fmt.transcribe(model, batch["codes"])
    wave = loaded.media_tokenizers["audio"].decode(batch["codes"][0])[0]  # (C, T)
    heard = loaded.transcribe([wave], sample_rate=8000)
    assert len(heard) == 1 and isinstance(heard[0], str)


@pytest.mark.parametrize("layout", ["flatten", "delay"])
def test_text_to_speech_trains_and_speaks(speech_data: SpeechDataModule, layout: str, tmp_path) -> None:
    task = TextToSpeechModule(
        vocab=speech_data.vocab,
        backbone=BACKBONE,
        audio_layout=layout,
        max_seconds=0.5,
        num_audio_samples=1,
        warmup_steps=1,
    )
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=speech_data)
    assert "val/duration_ratio" in trainer.callback_metrics
    assert ("val/level0_accuracy" in trainer.callback_metrics) == (layout == "delay")
    assert list((tmp_path / "speech").glob("val_step*_0.wav"))  # generated speech, decoded by the codec
    results = trainer.test(task, datamodule=speech_data, verbose=False)
    assert {"test/duration_ratio", "heldout/duration_ratio"} <= set().union(*results)
    assert list((tmp_path / "speech").glob("heldout_step*_0.wav"))
    model = task.model.eval()
    fmt = model.task_format("speak")
    assert ("formats.speak.codebook_heads.proj.weight" in model.state_dict()) == (layout == "delay")
    codes = fmt.generate_codes(model, ["a small red square", "a large blue circle at the top"])
    assert all(c.shape[0] == 2 and 1 <= c.shape[1] <= fmt.max_frames and int(c.max()) < 16 for c in codes)
    waves = model.speak(["a small red square"])
    assert waves[0].shape[0] == 1 and waves[0].shape[1] % 200 == 0 and waves[0].abs().max() <= 1
    batch = speech_data.collate(speech_data.splits["val"])
    loss = task.train().loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.media_tokenizers["audio"].parameters())  # the codec stays frozen


def test_speech_task_in_a_mixture_names_its_own_test_splits(
    speech_data: SpeechDataModule, speech_args: dict[str, Any], tmp_path
) -> None:
    entry = {
        "datamodule": "anytoken.tasks.data.speech.SpeechDataModule",
        "data_args": speech_args,  # the fixture's codec and cache: the same tokens
        "format": {"kind": "transcribe", "audio_layout": "flatten"},
        "template": ["<bos>", {"tokens": "audio", "from": "codes", "map": "codes_to_ids", "prefix": True},
                     "<transcribe>", {"tokens": "text", "from": "text_ids", "target": True}],
    }
    data = MixtureDataModule({"speech_to_text": entry, "speech_again": entry}, steps_per_epoch=1)
    model = MixtureModule(data.vocab, backbone=BACKBONE, decoding={"max_new_tokens": 4})
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    trainer.test(model, datamodule=data)
    names = set(trainer.callback_metrics)
    for task in ("speech_to_text", "speech_again"):  # each task's dataloaders map to its own split names
        assert {f"test/{task}/wer", f"heldout/{task}/wer"} <= names
    assert not [n for n in names if n.startswith("(")]


def test_speech_modules_need_an_audio_codec(speech_data: SpeechDataModule) -> None:
    vocab = speech_data.vocab
    bad = {**vocab, "tokenizers": {**vocab["tokenizers"], "audio": {"tokenizer": "mulaw", "config": {}}}}
    for module in (SpeechToTextModule, TextToSpeechModule):
        with pytest.raises(ValueError, match="audio codec"):
            module(vocab=bad, backbone=BACKBONE)
    with pytest.raises(ValueError, match="audio_layout"):
        TextToSpeechModule(vocab=vocab, backbone=BACKBONE, audio_layout="interleave")
    codec = SpeechToTextModule(vocab=vocab, backbone=BACKBONE).model.media_tokenizers["audio"]
    assert isinstance(codec, AudioCodecTokenizer)
