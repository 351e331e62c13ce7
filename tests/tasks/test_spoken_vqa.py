"""Spoken questions about images: SpokenVQADataModule (espeak-ng + the audio codec) and VQAModule with
``question_modality="audio"``: training, the one-row-per-image loss, answering waves, releases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training import train_steps

import anytoken
from anytoken.models.formats import TaskFormat
from anytoken.tasks.data.spoken_vqa import SpokenVQADataModule
from anytoken.tasks.data.synthetic.spoken import HELDOUT_VOICES, Utterance, espeak_path, synthesize
from anytoken.tasks.data.vqa import VQADataModule
from anytoken.tasks.vqa import VQAModule

needs_espeak = pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed (apt-get install "
                                  "espeak-ng)")
pytestmark = [pytest.mark.usefixtures("one_thread"), needs_espeak]
CODEC = {
    "tokenizer": "audio_codec",
    "config": dict(sample_rate=8000, strides=[10, 20], encoder_channels=4, decoder_channels=16,
                   dilations=[1], latent_dim=8, codebook_size=16, num_quantizers=2, loss_scales=[64, 128]),
}
TINY = {
    "backbone": {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 512},
    "image_encoder": {"source": "cnn", "image_size": 32, "cnn_width": 8, "cnn_grid": 4},
    "decoding": {"max_new_tokens": 4},
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("spoken_vqa"))


def make_data(cache_dir: str) -> SpokenVQADataModule:
    """Two-object scenes, every question spoken and encoded by an untrained tiny codec (seeded: the same)."""
    torch.manual_seed(0)
    return SpokenVQADataModule(codec=CODEC, num_codebooks=1, cache_dir=cache_dir, num_train=12, num_val=2,
                               num_test=2, num_heldout=2, batch_size=3, image_size=32, bpe_vocab_size=280)


@pytest.fixture(scope="module")
def spoken(cache_dir: str) -> SpokenVQADataModule:
    return make_data(cache_dir)


def test_batches_carry_each_question_spoken(spoken: SpokenVQADataModule, cache_dir: str) -> None:
    batch = next(iter(spoken.train_dataloader()))
    codes = batch["question_codes"]
    assert len(codes) == len(batch["questions"]) == len(batch["question_tokens"])
    assert all(c.dim() == 2 and c.shape[0] == 1 and c.shape[1] > 5 for c in codes)  # [K, T']: a spoken phrase
    assert {"text", "image", "audio"} <= set(spoken.space.modalities) and "vqa" in spoken.space.tasks
    assert spoken.vocab["tokenizers"]["audio"]["tokenizer"] == "audio_codec"
    heldout = spoken._utterances("heldout")
    assert heldout and {u.voice for u in heldout.values()} <= set(HELDOUT_VOICES)
    assert len(list(Path(cache_dir).glob("speech_vqa_*.pt"))) == 4  # one file per split, read back:
    again = next(iter(make_data(cache_dir).train_dataloader()))["question_codes"]
    assert all(torch.equal(a, b) for a, b in zip(codes, again))


def test_spoken_questions_train_answer_and_survive_a_release(spoken: SpokenVQADataModule, tmp_path) -> None:
    task = VQAModule(spoken.vocab, question_modality="audio", lr=3e-3, **TINY)
    task.adopt_media_tokenizers(spoken)
    model, fmt = task.model, task.model.formats["vqa"]
    batch = next(iter(spoken.train_dataloader()))
    seq = fmt.rows(model, batch)
    audio = spoken.space.range("audio")
    assert ((seq.input_ids >= audio.start) & (seq.input_ids < audio.stop)).any()  # the question is speech
    per_question = TaskFormat.loss(fmt, model, batch)
    torch.testing.assert_close(fmt.loss(model, batch), per_question)  # one row per image: the same loss
    first, last = train_steps(task, batch, 8)
    assert last < first
    loaded = anytoken.load(task.eval().export(tmp_path / "release"))
    assert loaded.task_format("vqa").answer(loaded, batch) == fmt.answer(model, batch)
    wave = synthesize(Utterance("what color is the circle?"), sample_rate=16000)  # resampled by the codec
    assert len(loaded.ask(batch["images"][:1], [wave], sample_rate=16000)) == 1
    with pytest.raises(ValueError, match="spoken"):
        loaded.ask(batch["images"][:1], ["what color is the circle?"])


def test_audio_questions_need_a_codec() -> None:
    text_only = VQADataModule(num_train=4, num_val=0, num_test=0, num_heldout=0, image_size=32,
                              bpe_vocab_size=280)
    with pytest.raises(ValueError, match="audio codec"):
        VQAModule(text_only.vocab, question_modality="audio", **TINY)
    with pytest.raises(ValueError, match="question_modality"):
        VQAModule(text_only.vocab, question_modality="video", **TINY)
