"""Real corpus layouts on small fixtures written in them: WebDataset image-text tar shards (``KEY.jpg`` +
``KEY.txt``, CC3M/LAION) for captioning and text-to-image, and a LibriSpeech folder (``*.flac`` +
``*.trans.txt``) for speech to text and text to speech; each also through token shards."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import pytest
import skimage
import torch
from loss_curves import same, train_losses
from PIL import Image

from anytoken.tasks.captioning import CaptioningModule
from anytoken.tasks.data.captioning import CaptioningDataModule
from anytoken.tasks.data.formats.librispeech import LibriSpeechDataset, write_librispeech
from anytoken.tasks.data.formats.webdataset import ImageTextShards, split_key
from anytoken.tasks.data.shard_writer import write_shards
from anytoken.tasks.data.speech import SpeechDataModule
from anytoken.tasks.data.synthetic.spoken import ALSA_SOUNDS, Utterance, alsa_words, espeak_path, synthesize
from anytoken.tasks.data.tar_members import write_tar
from anytoken.tasks.data.text_to_image import TextToImageDataModule
from anytoken.tasks.speech import SpeechToTextModule, TextToSpeechModule
from anytoken.tasks.text_to_image import TextToImageModule
from anytoken.tokenizers.audio_codec import AudioCodecTokenizer
from anytoken.tokenizers.audio_io import read_audio
from anytoken.tokenizers.image_vq import ImageVQTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
PHOTOS = {  # skimage's bundled photos and their captions
    "astronaut": "an astronaut in a white suit", "coffee": "a cup of coffee on a saucer",
    "chelsea": "a cat looking to the side", "rocket": "a rocket on its launch pad",
    "motorcycle_left": "a red motorcycle in a garage", "hubble_deep_field": "galaxies in deep space",
}
TINY_VQ = dict(image_size=32, downsample=8, channels=8, encoder_channels=8, channel_mult=[1, 1, 1],
               codebook_size=16, latent_dim=4)
CODEC = dict(sample_rate=8000, strides=[10, 20], encoder_channels=4, decoder_channels=16, dilations=[1],
             activation="elu", latent_dim=8, codebook_size=16, num_quantizers=2, loss_scales=[64, 128])
BACKBONE = {"n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 48}


def jpeg(name: str) -> bytes:
    """A bundled photo as JPEG bytes (shrunk: fixtures stay small)."""
    image = Image.open(Path(skimage.data_dir) / next(Path(skimage.data_dir).glob(f"{name}.*")).name)
    image = image.convert("RGB")
    image.thumbnail((96, 96))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def image_text_tars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shards in img2dataset's layout: ``KEY.jpg``, ``KEY.txt`` and ``KEY.json`` per sample."""
    root = tmp_path_factory.mktemp("webdataset")
    for shard, names in enumerate([list(PHOTOS)[:3], list(PHOTOS)[3:]]):
        members = {}
        for i, name in enumerate(names):
            key = f"{shard:05d}{i:04d}"
            members |= {f"{key}.jpg": jpeg(name), f"{key}.txt": PHOTOS[name].encode(),
                        f"{key}.json": b'{"url": "bundled"}'}
        write_tar(root / f"{shard:05d}.tar", members)
    return root


@pytest.fixture(scope="module")
def vq(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("vq") / "vq"
    torch.manual_seed(0)
    ImageVQTokenizer(**TINY_VQ).save_pretrained(path)
    return str(path)


def test_image_text_tars_read_as_pairs(image_text_tars: Path, tmp_path: Path) -> None:
    data = ImageTextShards(image_text_tars, image_size=32)
    assert len(data) == 6 and data.captions == list(PHOTOS.values())
    item = data[4]
    assert item["caption"] == PHOTOS["motorcycle_left"] and item["image_id"] == "00001.tar/000010001"
    assert item["image"].mode == "RGB" and min(item["image"].size) >= 32
    assert split_key("dir/a.b.jpg") == ("dir/a", "b.jpg")
    write_tar(tmp_path / "bad.tar", {"1.jpg": jpeg("coffee"), "1.txt": b"a cup", "2.jpg": jpeg("rocket")})
    with pytest.raises(ValueError, match="sample '2' lacks a caption"):
        ImageTextShards(tmp_path / "bad.tar")
    with pytest.raises(ValueError, match="no WebDataset tar shards"):
        ImageTextShards(tmp_path / "missing")


def test_captioning_and_text_to_image_read_tar_shards(image_text_tars: Path, vq: str, tmp_path: Path) -> None:
    args = dict(webdataset=str(image_text_tars), num_val=2, bpe_vocab_size=280, batch_size=2)
    fly = CaptioningDataModule(image_tokenizer=vq, image_size=32, **args)
    assert len(fly.splits["train"]) == 4 and len(fly.splits["val"]) == 2
    write_shards(fly, tmp_path / "caption", shard_size=3, progress=False)
    sharded = CaptioningDataModule(image_tokenizer=vq, image_size=32, shards=str(tmp_path / "caption"),
                                   **args)
    expected = train_losses(fly, CaptioningModule, steps=2)
    assert train_losses(sharded, CaptioningModule, steps=2) == pytest.approx(expected)
    draw = TextToImageDataModule(vq, **args)
    module = TextToImageModule(draw.vocab, backbone=BACKBONE, decoding={"max_new_tokens": 17})
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, draw)
    results = trainer.test(module, draw, verbose=False)[0]
    assert "test/loss" in results and not any("match" in key for key in results)  # photos are not scenes


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two speakers in the LibriSpeech layout: espeak-ng sentences and alsa-utils' recorded words, FLAC."""
    if espeak_path() is None or not alsa_words():
        pytest.fail(f"the LibriSpeech fixture needs espeak-ng and alsa-utils' {ALSA_SOUNDS}")
    root = tmp_path_factory.mktemp("LibriSpeech") / "train-clean-100"
    spoken = ["A RED CIRCLE", "A BLUE SQUARE ON THE LEFT", "TWO GREEN TRIANGLES", "A SMALL YELLOW DIAMOND"]
    synthesized = [(synthesize(Utterance(text.lower()), 16000), text) for text in spoken]
    recorded = [(read_audio(p, 16000, 1)[0], text.upper()) for p, text in alsa_words()[:3]]
    write_librispeech(root, {(19, 198): synthesized, (26, 495): recorded}, 16000)
    return root


def test_librispeech_folder_reads_utterances(librispeech: Path, tmp_path: Path) -> None:
    data = LibriSpeechDataset(librispeech.parent)  # any folder above the speaker folders
    assert len(data) == 7 and data[0]["id"] == "19-198-0000" and data[0]["text"] == "A RED CIRCLE"
    assert data[6]["id"] == "26-495-0002" and data[6]["path"].endswith("26/495/26-495-0002.flac")
    broken = tmp_path / "1" / "2"
    broken.mkdir(parents=True)
    (broken / "1-2.trans.txt").write_text("1-2-0000 HELLO\n")
    with pytest.raises(ValueError, match=r"1-2.trans.txt:1: no audio file 1-2-0000.flac"):
        LibriSpeechDataset(tmp_path)
    (broken / "1-2.trans.txt").unlink()
    with pytest.raises(ValueError, match=r"no \*.trans.txt transcripts .*: not a LibriSpeech-layout folder"):
        LibriSpeechDataset(tmp_path)
    with pytest.raises(ValueError, match="LibriSpeech folder not found"):
        LibriSpeechDataset(tmp_path / "missing")


def test_speech_tasks_read_a_librispeech_folder(librispeech: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    AudioCodecTokenizer(**CODEC).save_pretrained(tmp_path / "codec")
    args = dict(codec_path=str(tmp_path / "codec"), librispeech=str(librispeech), num_val=2,
                bpe_vocab_size=270, batch_size=2)
    fly = SpeechDataModule(**args)
    assert len(fly.splits["train"]) == 5
    assert [item["id"] for item in fly.splits["val"]] == ["26-495-0001", "26-495-0002"]  # the last, by id
    batch = fly.collate([fly.splits["train"][0]])
    wave = read_audio(fly.splits["train"][0]["path"], 8000, 1)[0]
    assert batch["codes"][0].shape == (2, -(-wave.shape[-1] // fly.codec.hop_length))  # encoded on the fly
    write_shards(fly, tmp_path / "speech", shard_size=2, progress=False)
    sharded = SpeechDataModule(**args, shards=str(tmp_path / "speech"))
    assert same(next(iter(fly.train_dataloader())), next(iter(sharded.train_dataloader())))
    stt = dict(steps=2, max_seq_len=256, audio_layout="delay")
    expected = train_losses(fly, SpeechToTextModule, **stt)
    assert train_losses(sharded, SpeechToTextModule, **stt) == pytest.approx(expected)
    speak = TextToSpeechModule(fly.vocab, backbone=BACKBONE | {"max_seq_len": 256}, audio_layout="delay")
    speak.adopt_media_tokenizers(fly)
    assert torch.isfinite(speak.loss(next(iter(sharded.train_dataloader()))))
