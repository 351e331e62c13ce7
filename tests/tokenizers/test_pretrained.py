"""The pretrained tokenizer adapters (anytoken.tokenizers.pretrained) on tiny random-weight transformers
models saved as the library saves them: loading by model_type, encode/decode shapes, grammar, TokenSpace
ranges, save/load, bad directories, the CLI round trip and one training step of a task that uses each, by
its shipped config. Nothing downloads; the tests skip when transformers (the ``hub`` extra) is missing."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers", reason="the adapters need transformers: pip install 'anytoken[hub]'")

from configs_shrink import shrink_config  # noqa: E402

import anytoken  # noqa: E402
from anytoken.cli import from_config, main  # noqa: E402
from anytoken.loading import LoadError  # noqa: E402
from anytoken.tokenizers import Tokenizer, TokenSpace, tokenizer_from_spec  # noqa: E402
from anytoken.tokenizers.audio_codes import AudioCodes  # noqa: E402
from anytoken.tokenizers.audio_io import write_audio  # noqa: E402
from anytoken.tokenizers.image_grid import ImageGrid  # noqa: E402
from anytoken.tokenizers.pretrained import (  # noqa: E402
    ChameleonVQTokenizer,
    DacTokenizer,
    Emu3VQTokenizer,
    EncodecTokenizer,
    MimiTokenizer,
)

pytestmark = pytest.mark.usefixtures("one_thread")
RATE = 8000  # every tiny codec: 8 kHz, 160 samples a frame (50 Hz)


def tiny_models() -> dict[str, Any]:
    """Tiny random transformers models, one per adapter (the sizes keep each test about a second)."""
    import transformers as tf

    mimi = dict(hidden_size=16, num_filters=4, upsampling_ratios=[8, 10], codebook_size=16, codebook_dim=8,
                num_quantizers=3, vector_quantization_hidden_dimension=8, num_hidden_layers=1,
                intermediate_size=16, num_attention_heads=2, num_key_value_heads=2, upsample_groups=16,
                sliding_window=16)
    vq = dict(base_channels=32, channel_multiplier=[1, 1, 1], num_res_blocks=1, attn_resolutions=[],
              embed_dim=4, latent_channels=4)
    return {
        # 1024 codes as every EnCodec (its config derives the level count assuming 10 bits a code)
        "encodec": tf.EncodecModel(tf.EncodecConfig(
            sampling_rate=RATE, num_filters=4, hidden_size=8, upsampling_ratios=[8, 20], num_lstm_layers=1,
            codebook_size=1024, codebook_dim=8, target_bandwidths=[0.5, 1.0])),
        "dac": tf.DacModel(tf.DacConfig(
            sampling_rate=RATE, encoder_hidden_size=4, downsampling_ratios=[8, 20], upsampling_ratios=[20, 8],
            decoder_hidden_size=16, n_codebooks=3, codebook_size=16, codebook_dim=4, hidden_size=8)),
        "mimi": tf.MimiModel(tf.MimiConfig(sampling_rate=RATE, **mimi)),
        "emu3_vq": tf.Emu3VQVAE(tf.Emu3VQVAEConfig(
            codebook_size=32, hidden_size=32, num_attention_heads=1, temporal_downsample_factor=4, **vq)),
        "chameleon_vq": tf.ChameleonVQVAE(tf.ChameleonVQVAEConfig(num_embeddings=32, resolution=32, **vq)),
    }


ADAPTERS = {"encodec": EncodecTokenizer, "dac": DacTokenizer, "mimi": MimiTokenizer,
            "emu3_vq": Emu3VQTokenizer, "chameleon_vq": ChameleonVQTokenizer}
AUDIO = ["encodec", "dac", "mimi"]


@pytest.fixture(scope="module")
def hub_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model as ``save_pretrained`` writes it (config.json + model.safetensors); ``emu3_32px``: the
    Emu3 adapter at 32 px saved by anytoken (Emu3 reads 512 px by default)."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    dirs = {}
    for name, model in tiny_models().items():
        model.save_pretrained(root / name)
        dirs[name] = root / name
    Emu3VQTokenizer.from_hub_directory(dirs["emu3_vq"], image_size=32).save_pretrained(root / "emu3_32px")
    dirs["emu3_32px"] = root / "emu3_32px"
    return dirs


def speech(seconds: float = 0.3, batch: int = 2) -> torch.Tensor:
    """Waves ``[batch, 1, T]`` at ``RATE``: a tone plus noise, well inside ``[-1, 1]``."""
    t = torch.arange(int(seconds * RATE)) / RATE
    return (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(batch, 1, len(t))).clamp(-1, 1)


def test_a_missing_transformers_is_one_clear_error(hub_dirs: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(LoadError, match=r"holds a encodec model; .*pip install 'anytoken\[hub\]'"):
        Tokenizer.from_pretrained(hub_dirs["encodec"])  # the CLI prints this one line
    with pytest.raises(ImportError, match=r"pip install 'anytoken\[hub\]'"):
        EncodecTokenizer({"model_type": "encodec"})


@pytest.mark.parametrize("name", AUDIO)
def test_audio_adapters_encode_decode_grammar_and_space(name: str, hub_dirs: dict[str, Path]) -> None:
    tok = Tokenizer.from_pretrained(hub_dirs[name])  # the model_type in config.json picks the adapter
    assert type(tok) is ADAPTERS[name] and isinstance(tok, AudioCodes) and tok.modality == "audio"
    assert (tok.sample_rate, tok.hop_length, tok.frame_rate) == (RATE, 160, 50)
    K, C = tok.num_codebooks, tok.cardinality
    assert tok.vocab_size == K * C and tok.bitrate == pytest.approx(50 * K * math.log2(C))
    wave = speech()  # 2400 samples: 15 frames
    codes = tok.encode(wave)
    assert codes.shape == (2, K, 15) and codes.dtype == torch.long and 0 <= codes.min() and codes.max() < C
    assert tok.encode(speech(2401 / RATE)).shape[-1] == 16  # a partial frame is padded to a whole one
    assert torch.equal(tok.encode(wave[:1]), codes[:1])  # one signal codes as in a batch
    assert tok.decode(codes).shape == (2, tok.channels, 15 * 160)
    ids = tok.codes_to_ids(codes[0])  # flat, frame by frame, as the grammar generates them
    grammar = tok.grammar()
    assert len(grammar.steps) == K and ids.shape == (15 * K,)
    assert all(lo <= int(i) < hi for n, i in enumerate(ids) for lo, hi in grammar.steps[n % K])
    assert torch.equal(tok.ids_to_codes(ids), codes[0]) and tok.decode(ids).shape == (1, tok.channels, 2400)
    space = TokenSpace.from_tokenizers({"audio": tok}, tasks=("transcribe",))
    glob = space.to_global("audio", ids)
    assert glob.min() >= space.range("audio").start and glob.max() < space.range("audio").stop
    assert torch.equal(space.to_local(glob, "audio"), ids)
    assert space.grammar_mask("audio", grammar).sum(-1).tolist() == [C] * K
    assert tok.encode(wave[0, 0, :1200], sample_rate=RATE // 2).shape == (1, K, 15)  # resampled to 8 kHz
    tok.train()
    assert not tok.model.training  # frozen: a task's train() never switches dropout on


@pytest.mark.parametrize("name", AUDIO)
def test_audio_adapters_save_load_spec_and_bad_input(name: str, hub_dirs: dict[str, Path], tmp_path) -> None:
    tok = Tokenizer.from_pretrained(hub_dirs[name])
    wave = speech()
    codes = tok.encode(wave)
    tok.save_pretrained(tmp_path / "saved")  # anytoken's format: the adapter's config + its weights
    again = Tokenizer.from_pretrained(tmp_path / "saved")
    assert type(again) is type(tok) and again.config() == tok.config()
    assert torch.equal(again.encode(wave), codes)
    rebuilt = tokenizer_from_spec(json.loads(json.dumps(tok.spec())))  # what a release stores: random weights
    assert rebuilt.config() == tok.config()
    rebuilt.load_state_dict(tok.state_dict())  # ... that the release's weights replace
    assert torch.equal(rebuilt.encode(wave), codes)
    with pytest.raises(ValueError, match="num_codebooks must be one of"):
        tok.with_codebooks(99)
    with pytest.raises(ValueError, match="lie in"):
        tok.decode(torch.full((1, tok.num_codebooks, 4), tok.cardinality))
    with pytest.raises(ValueError, match="codebooks"):
        tok.decode(torch.zeros(1, tok.num_codebooks + 1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(torch.full((1, 1, 800), float("nan")))


def test_bitrates_follow_the_levels() -> None:
    models = tiny_models()
    enc = EncodecTokenizer(models["encodec"].config.to_dict())
    assert enc.levels() == (1, 2) and enc.num_codebooks == 1 and enc.bitrate == 500  # the lowest bandwidth
    assert enc.with_codebooks(2).bitrate == 1000 and enc.bandwidths() == {1: 0.5, 2: 1.0}
    dac = DacTokenizer(models["dac"].config.to_dict())
    assert dac.levels() == (1, 2, 3) and dac.num_codebooks == 3 and dac.bitrate == 50 * 3 * 4
    mimi = MimiTokenizer(models["mimi"].config.to_dict(), num_codebooks=2)
    assert mimi.levels() == (1, 2, 3) and mimi.encode(speech()).shape == (2, 2, 15)
    loud = models["encodec"].config.to_dict() | {"normalize": True}  # encodec_48khz's loudness scales
    with pytest.raises(ValueError, match="loudness scale"):
        EncodecTokenizer(loud)
    with pytest.raises(ValueError, match="encodec config"):
        EncodecTokenizer(models["dac"].config.to_dict())


def test_image_adapters_encode_decode_grammar_and_space(hub_dirs: dict[str, Path]) -> None:
    emu3 = Tokenizer.from_pretrained(hub_dirs["emu3_vq"])
    assert type(emu3) is Emu3VQTokenizer and isinstance(emu3, ImageGrid) and emu3.modality == "image"
    assert emu3.image_size == 512 and emu3.grid == (128, 128)  # Emu3's resolution (4x in this tiny one)
    tok = Tokenizer.from_pretrained(hub_dirs["emu3_32px"])
    assert type(tok) is Emu3VQTokenizer and tok.config()["hub_config"] == emu3.config()["hub_config"]
    assert tok.vocab_size == 32 and tok.grid == (8, 8) and tok.tokens_per_image == 64
    images = torch.rand(2, 3, 40, 48)  # resized and centre-cropped to 32 x 32
    ids = tok.encode(images)
    assert ids.shape == (2, 8, 8) and ids.dtype == torch.long and 0 <= ids.min() and ids.max() < 32
    out = tok.decode(ids)
    assert out.shape == (2, 3, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert tok.decode(ids.flatten(1)).shape == (2, 3, 32, 32) and tok.decode(ids[0]).shape == (1, 3, 32, 32)
    grammar = tok.grammar()
    assert grammar.min_length == grammar.max_length == 64 and grammar.steps == (((0, 32),),)
    space = TokenSpace.from_tokenizers({"image": tok}, tasks=("draw",))
    glob = space.to_global("image", ids)
    assert len(space.range("image")) == 32 and glob.min() >= space.range("image").start
    assert 0 < tok.reconstruction_error(images) < 1
    with pytest.raises(ValueError, match="8 x 8"):
        tok.decode(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        tok.decode(torch.full((1, 8, 8), 32))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        tok.encode(images * 2)
    with pytest.raises(ValueError, match="multiple of 4"):
        Emu3VQTokenizer(tok.hub_config, image_size=15)


def test_chameleon_encodes_and_says_it_cannot_decode(hub_dirs: dict[str, Path]) -> None:
    tok = Tokenizer.from_pretrained(hub_dirs["chameleon_vq"])
    assert type(tok) is ChameleonVQTokenizer and tok.image_size == 32 and tok.grid == (8, 8)
    assert not tok.decodes and tok.vocab_size == 32
    ids = tok.encode(torch.rand(3, 3, 32, 32))
    assert ids.shape == (3, 8, 8) and ids.max() < 32
    with pytest.raises(NotImplementedError, match="no decoder"):
        tok.decode(ids)


def test_bad_hub_directories_give_one_clear_error(hub_dirs: dict[str, Path], tmp_path) -> None:
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(LoadError, match="'bert' is not a tokenizer anytoken adapts.*encodec"):
        Tokenizer.from_pretrained(other)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((hub_dirs["dac"] / "config.json").read_text())
    with pytest.raises(LoadError, match="not a loadable DacModel"):
        Tokenizer.from_pretrained(no_weights)
    mixed = tmp_path / "mixed"  # a DAC config beside Mimi's weights
    mixed.mkdir()
    (mixed / "config.json").write_text((hub_dirs["dac"] / "config.json").read_text())
    (mixed / "model.safetensors").write_bytes((hub_dirs["mimi"] / "model.safetensors").read_bytes())
    with pytest.raises(LoadError, match="do not fit|not a loadable"):
        Tokenizer.from_pretrained(mixed)
    with pytest.raises(LoadError, match="holds a DacTokenizer, not a ImageVQTokenizer"):
        from anytoken.tokenizers import ImageVQTokenizer

        ImageVQTokenizer.from_pretrained(hub_dirs["dac"])
    with pytest.raises(FileNotFoundError, match="not a saved anytoken tokenizer nor a directory with config"):
        Tokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("name", [*AUDIO, "emu3_32px"])
def test_cli_encode_decode_round_trip(name: str, hub_dirs: dict[str, Path], tmp_path, capsys) -> None:
    if name == "emu3_32px":
        source, output = tmp_path / "in.png", tmp_path / "out.png"
        Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(source)
    else:
        source, output = tmp_path / "in.wav", tmp_path / "out.wav"
        write_audio(source, speech(batch=1)[0], RATE)
    tokenizer = str(hub_dirs[name])
    main(["encode", str(source), "--tokenizer", tokenizer, "-o", str(tmp_path / "ids.npy")])
    ids = np.load(tmp_path / "ids.npy")
    main(["decode", str(tmp_path / "ids.npy"), "--tokenizer", tokenizer, "-o", str(output)])
    assert output.is_file() and "->" in capsys.readouterr().out
    tok = Tokenizer.from_pretrained(tokenizer)
    if name == "emu3_32px":
        assert ids.shape == (1, 8, 8) and Image.open(output).size == (32, 32)
    else:
        assert ids.shape == (1, tok.num_codebooks, 15)
        import soundfile as sf

        assert sf.info(str(output)).frames == 15 * 160 and sf.info(str(output)).samplerate == RATE


def test_cli_decode_of_chameleon_ids_is_one_line(hub_dirs: dict[str, Path], tmp_path) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(source)
    tokenizer = str(hub_dirs["chameleon_vq"])
    main(["encode", str(source), "--tokenizer", tokenizer, "-o", str(tmp_path / "ids.npy")])
    assert np.load(tmp_path / "ids.npy").shape == (1, 8, 8)
    with pytest.raises(SystemExit, match="anytoken decode: chameleon_vq: .*no decoder"):
        main(["decode", str(tmp_path / "ids.npy"), "--tokenizer", tokenizer, "-o", str(tmp_path / "o.png")])


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    theirs = b.state_dict()
    return all(torch.equal(v, theirs[k]) for k, v in a.state_dict().items())


def one_step(config: str, tmp_path: Path, overrides: list[str], num_train: int = 2) -> tuple[Any, float]:
    """A shipped config, shrunk, with ``overrides`` and ``num_train`` samples: its model and data as the CLI
    builds them; the model takes the tokenizers' weights from the data (as ``fit`` does), trains one step
    and exports a release that ``anytoken.load`` reads back with the same tokenizer weights."""
    repo = Path(__file__).resolve().parents[2]
    sizes = {"num_train": num_train, "num_val": 0, "num_test": 0, "num_heldout": 0, "batch_size": 2}
    args = [*overrides, *(f"--data.init_args.{k}={v}" for k, v in sizes.items())]
    cli = from_config(shrink_config(repo / "configs" / config, tmp_path), *args)
    module, data = cli.model, cli.datamodule
    module.adopt_media_tokenizers(data)
    tokenizers = module.model.media_tokenizers
    assert all(same_weights(tok, data.vocabulary().tokenizers[m]) for m, tok in tokenizers.items())
    batch = next(iter(data.train_dataloader()))
    loss = module.train().loss(batch)
    loss.backward()
    torch.optim.AdamW(p for p in module.parameters() if p.requires_grad).step()
    assert all(p.grad is None for tok in tokenizers.values() for p in tok.parameters())  # frozen
    loaded = anytoken.load(module.export(tmp_path / "release"))
    assert all(same_weights(tok, loaded.media_tokenizers[m]) for m, tok in tokenizers.items())
    return module, float(loss.detach())


@pytest.mark.parametrize("name", AUDIO)
def test_speech_to_text_trains_a_step_on_each_audio_adapter(name: str, hub_dirs: dict[str, Path],
                                                            tmp_path) -> None:
    from anytoken.tasks.data.synthetic.spoken import espeak_path

    if espeak_path() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): spoken data needs it")
    module, loss = one_step("speech_stt.yaml", tmp_path, [
        f"--data.init_args.codec_path={hub_dirs[name]}", "--data.init_args.num_codebooks=2"])
    codec = module.model.media_tokenizers["audio"]
    assert type(codec) is ADAPTERS[name] and codec.num_codebooks == 2 and math.isfinite(loss)
    assert len(module.space.range("audio")) == 2 * codec.cardinality


def test_text_to_image_trains_a_step_on_emu3(hub_dirs: dict[str, Path], tmp_path) -> None:
    module, loss = one_step("text_to_image_scenes.yaml", tmp_path, [
        f"--data.init_args.image_tokenizer={hub_dirs['emu3_32px']}",
        "--model.init_args.decoding.max_new_tokens=65"], num_train=4)
    assert type(module.model.media_tokenizers["image"]) is Emu3VQTokenizer and math.isfinite(loss)
    assert len(module.space.range("image")) == 32


def test_captioning_from_chameleon_tokens_trains_a_step(hub_dirs: dict[str, Path], tmp_path) -> None:
    module, loss = one_step("vq_image_caption_scenes.yaml", tmp_path, [
        f"--data.init_args.image_tokenizer={hub_dirs['chameleon_vq']}", "--data.init_args.image_size=32"],
        num_train=4)
    assert type(module.model.media_tokenizers["image"]) is ChameleonVQTokenizer and math.isfinite(loss)


def test_text_to_image_refuses_a_tokenizer_that_cannot_decode(hub_dirs: dict[str, Path]) -> None:
    from anytoken.tasks.data.text_to_image import TextToImageDataModule

    with pytest.raises(ValueError, match="not an image tokenizer that decodes"):
        TextToImageDataModule(str(hub_dirs["chameleon_vq"]), num_train=1)
