"""The audio codec and audio I/O: shapes and ranges, ids in the TokenSpace, bad input, chunking, save/load,
gradients, training, bitrates, files and the CLI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from anytoken.cli import main
from anytoken.tokenizers import Tokenizer, TokenSpace, create_tokenizer
from anytoken.tokenizers.audio_codec import AudioCodecConfig, AudioCodecTokenizer
from anytoken.tokenizers.audio_io import convert_channels, read_audio, resample, resampling_ratio
from anytoken.tokenizers.base import MediaWarning

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(
    sample_rate=8000,
    strides=[4, 5],
    encoder_channels=4,
    decoder_channels=16,
    dilations=[1],
    activation="elu",
    latent_dim=8,
    codebook_size=16,
    num_quantizers=3,
    loss_scales=[64, 128],
)


def tiny(**overrides: object) -> AudioCodecTokenizer:
    torch.manual_seed(0)
    return AudioCodecTokenizer(**{**TINY, **overrides})


def speechy(n: int = 2, seconds: float = 0.5, rate: int = 8000, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with a syllable-like envelope, ``[n, 1, T]`` in ``[-1, 1]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    f0 = 100 + 150 * torch.rand(n, 1, 1, generator=g)
    tone = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 5))
    envelope = torch.sin(math.pi * 4 * t).abs()
    return (0.3 * tone * envelope + 0.01 * torch.randn(n, 1, len(t), generator=g)).clamp(-1, 1)


def test_encode_decode_shapes_ranges_and_bitrate() -> None:
    codec = tiny().eval()
    codes = codec.encode(speechy(2, 0.5))
    assert codes.shape == (2, 3, 200) and codes.dtype == torch.long  # 4000 samples / hop 20
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.cardinality
    wave = codec.decode(codes)
    assert wave.shape == (2, 1, 4000) and float(wave.abs().max()) <= 1
    assert codec.encode(speechy(1, 0.5)[0, 0][:3999]).shape == (1, 3, 200)  # [T], partial last frame
    assert codec.frame_rate == 400 and codec.hop_length == 20
    assert codec.bitrate == pytest.approx(400 * 3 * 4) and codec.vocab_size == 48
    assert AudioCodecTokenizer().bitrate == pytest.approx(6000)  # the default: 50 Hz x 12 x 10 bits


def test_ids_in_the_token_space_and_grammar() -> None:
    codec = tiny().eval()
    codes = codec.encode(speechy(2, 0.1))  # (2, 3, 40)
    ids = codec.codes_to_ids(codes)
    assert ids.shape == (2, 120) and torch.equal(ids[0, :3], codes[0, :, 0] + torch.tensor([0, 16, 32]))
    assert torch.equal(codec.ids_to_codes(ids), codes)
    torch.testing.assert_close(codec.decode(ids[0]), codec.decode(codes[:1]))  # flat ids, as generated
    grammar = codec.grammar()
    assert grammar.steps == (((0, 16),), ((16, 32),), ((32, 48),)) and grammar.min_length == 3
    space = TokenSpace({"text": 10, "audio": codec.vocab_size})
    mask = space.grammar_mask("audio", grammar)  # one level's sub-range per step
    assert mask.sum(1).tolist() == [16, 16, 16] and not (mask[0] & mask[1]).any()
    with pytest.raises(ValueError, match="cycle"):
        codec.ids_to_codes(torch.tensor([16, 0, 32]))
    with pytest.raises(ValueError, match="whole frames"):
        codec.ids_to_codes(torch.tensor([0, 16]))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.full((1, 1, 800), float("nan")), "NaN"),
        (torch.zeros(1, 1, 0), "no samples"),
        (torch.zeros(1, 1, 1, 800), r"\[B, C, T\]"),
        (np.zeros(800), "float tensor"),
    ],
)
def test_encode_rejects_bad_audio(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny().encode(bad)


@pytest.mark.parametrize(
    ("odd", "match"),
    [
        (torch.full((1, 1, 800), 1.5), r"outside \[-1, 1\]: clamped"),
        (torch.ones(1, 1, 800), "clipped"),
        (torch.zeros(1, 1, 800), "silent"),
    ],
)
def test_odd_audio_encodes_with_a_warning_that_strict_refuses(odd: torch.Tensor, match: str) -> None:
    codec = tiny().eval()
    with pytest.warns(MediaWarning, match=match):
        codes = codec.encode(odd)
    with pytest.warns(MediaWarning):
        assert torch.equal(codes, codec.encode(odd.clamp(-1, 1)))  # out-of-range samples are clamped
    with warnings.catch_warnings(), pytest.raises(MediaWarning, match=match):
        warnings.simplefilter("error", MediaWarning)  # what --strict does
        codec.encode(odd)


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        (torch.zeros(1, 2, 5, dtype=torch.long), "3 codebooks"),
        (torch.full((1, 3, 5), 16), r"\[0, 16\)"),
        (torch.full((1, 3, 5), -1), r"\[0, 16\)"),
        (torch.zeros(1, 3, 5), "integers"),
        (torch.zeros(1, 3, 0, dtype=torch.long), "T' >= 1"),
    ],
)
def test_decode_rejects_bad_codes(codes: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny().decode(codes)


def test_channels_and_sample_rates_follow_the_policy() -> None:
    codec = tiny().eval()
    mono = speechy(1, 0.5)
    stereo = torch.cat([mono, mono], dim=1)
    assert torch.equal(codec.encode(stereo), codec.encode(mono))  # mean of identical channels
    up = resample(mono, 8000, 16000)
    assert codec.encode(up, sample_rate=16000).shape == (1, 3, 200)
    assert convert_channels(torch.ones(1, 5), 2).shape == (2, 5)
    assert convert_channels(torch.stack([torch.ones(5), -torch.ones(5)]), 1).abs().max() == 0


def test_chunked_encoding_equals_whole_signal() -> None:
    """Chunks of 0.1 s with the receptive field as context: codes equal whole-signal ones (>= 99% of them;
    float rounding can flip a near tie), decoded waves within 1e-4."""
    whole, chunked = tiny(chunk_seconds=100.0).eval(), tiny(chunk_seconds=0.1).eval()
    x = speechy(1, 2.0)
    codes_whole, codes_chunked = whole.encode(x), chunked.encode(x)
    assert (codes_whole == codes_chunked).float().mean() >= 0.99
    torch.testing.assert_close(chunked.decode(codes_whole), whole.decode(codes_whole), atol=1e-4, rtol=0)


def test_resampling_in_chunks_equals_whole_signal() -> None:
    from torchaudio.functional import resample as whole

    x = torch.randn(2, 22050 * 3 + 17)
    for orig, new in [(22050, 16000), (48000, 16000), (16000, 24000)]:
        torch.testing.assert_close(resample(x, orig, new, chunk_seconds=0.5), whole(x, orig, new))


@pytest.mark.parametrize(("orig", "new"), [(8001, 16000), (44101, 16000), (16000, 44101), (7919, 48000)])
def test_odd_rate_pairs_resample_with_a_bounded_kernel(orig: int, new: int) -> None:
    """Coprime rates would need torchaudio's kernel of about orig x new taps; soxr resamples them."""
    assert max(resampling_ratio(orig, new)) > 1000
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(orig) / orig)[None]  # 1 s at 440 Hz
    out = resample(tone, orig, new)
    assert out.shape[-1] == new
    peak = torch.fft.rfft(out[0]).abs().argmax().item() * new / out.shape[-1]
    assert abs(peak - 440) < 2  # the pitch survives


def test_rates_below_the_floor_are_refused() -> None:
    with pytest.raises(ValueError, match="1 Hz.*4000 Hz or more"):
        resampling_ratio(1, 16000)


def test_save_load_identical(tmp_path) -> None:
    codec = tiny(disc_weight=1.0)
    codec.loss(speechy(4, 0.25))  # k-means init of the codebooks
    codec.eval()
    codec.save_pretrained(tmp_path / "codec")
    loaded = Tokenizer.from_pretrained(tmp_path / "codec")
    assert isinstance(loaded, AudioCodecTokenizer) and loaded.discriminator is None  # training aid: not saved
    x = speechy(2, 0.5, seed=1)
    assert torch.equal(loaded.encode(x), codec.encode(x))
    torch.testing.assert_close(loaded.decode(codec.encode(x)), codec.decode(codec.encode(x)))
    assert create_tokenizer("audio_codec", **TINY).vocab_size == 48


def test_gradients_reach_every_parameter_and_discriminator_trains() -> None:
    codec = tiny(disc_weight=1.0, stft_weight=1.0, l1_weight=1.0)
    out = codec.loss(speechy(2, 0.25), step=0)
    assert {"mel", "stft", "l1", "adversarial", "feature_matching", "quantizer_loss"} <= set(out.metrics)
    out.loss.backward()
    silent = [n for n, p in codec.named_parameters() if not n.startswith("discriminator.") and p.grad is None]
    assert not silent
    assert all(p.grad is None for p in codec.discriminator.parameters())  # frozen in the generator step
    d_loss = codec.discriminator_loss(speechy(2, 0.25), out.reconstruction)
    d_loss.backward()
    assert torch.isfinite(d_loss) and all(p.grad is not None for p in codec.discriminator.parameters())
    with pytest.raises(ValueError, match="no discriminator"):
        tiny().discriminator_loss(speechy(1, 0.25), speechy(1, 0.25))


def test_error_falls_with_training_and_quantizer_dropout_serves_lower_bitrates() -> None:
    codec = tiny(quantizer_dropout=1.0, vq_decay=0.8)
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    x = speechy(4, 0.25)
    first = float(codec.eval().loss(x).metrics["mel"])
    codec.train()
    for step in range(10):
        out = codec.loss(x, step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    codec.eval()
    after = float(codec.loss(x).metrics["mel"])
    assert after < 0.6 * first
    one_level = AudioCodecTokenizer(**codec.config()).with_codebooks(1)
    one_level.load_state_dict(codec.state_dict())
    one_level.eval()
    assert one_level.encode(x).shape[1] == 1 and one_level.bitrate == codec.bitrate / 3
    assert one_level.decode(one_level.encode(x)).shape == x.shape


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="num_codebooks"):
        AudioCodecConfig(num_quantizers=4, num_codebooks=5)
    with pytest.raises(ValueError, match="activation"):
        AudioCodecConfig(activation="relu")
    with pytest.raises(ValueError, match="loss weights"):
        AudioCodecConfig(mel_weight=0.0)


def _write(path, wave: np.ndarray, rate: int, **kwargs: object) -> None:
    sf.write(str(path), wave, rate, **kwargs)


def test_read_audio_policy_and_bad_files(tmp_path) -> None:
    rate = 22050
    t = np.arange(rate) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 330 * t)], axis=1)
    _write(tmp_path / "a.flac", stereo, rate)
    wave, out_rate = read_audio(tmp_path / "a.flac", 16000, 1, block_seconds=0.1)
    assert out_rate == 16000 and wave.shape == (1, 16000)
    whole, _ = read_audio(tmp_path / "a.flac", 16000, 1)
    torch.testing.assert_close(wave, whole)  # block reading changes nothing
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    _write(tmp_path / "silent.wav", np.zeros(800), 8000)
    _write(tmp_path / "nan.wav", np.full(800, np.nan), 8000, subtype="FLOAT")
    _write(tmp_path / "clipped.wav", np.ones(800), 8000)
    _write(tmp_path / "hot.wav", np.full(800, 2.0), 8000, subtype="FLOAT")
    _write(tmp_path / "none.wav", np.zeros((0, 1)), 8000)
    _write(tmp_path / "long.wav", np.full(8000, 0.25), 8000)
    (tmp_path / "truncated.wav").write_bytes((tmp_path / "long.wav").read_bytes()[:4000])
    for name, match in [
        ("empty.wav", "empty"),
        ("text.wav", "not a valid audio file"),
        ("nan.wav", "NaN"),
        ("none.wav", "no samples"),
        ("truncated.wav", "truncated: the WAV header promises 16000 bytes"),
    ]:
        with pytest.raises(ValueError, match=match):
            read_audio(tmp_path / name, 8000, 1)
    for name, match in [("silent.wav", "silent"), ("clipped.wav", "clipped"), ("hot.wav", "clamped")]:
        with pytest.warns(MediaWarning, match=match):
            wave, _ = read_audio(tmp_path / name, 8000, 1)
        assert wave.abs().max() <= 1
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "missing.wav")


def test_cli_encode_decode_real_files_and_bad_input(tmp_path) -> None:
    codec = tiny()
    codec.loss(speechy(4, 0.25))
    codec.eval().save_pretrained(tmp_path / "codec")
    rate = 22050  # any rate and channel count: resampled and downmixed by the policy
    t = np.arange(rate // 2) / rate
    _write(tmp_path / "speech.wav", np.stack([0.4 * np.sin(2 * np.pi * 150 * t)] * 2, axis=1), rate)
    tokens, out = tmp_path / "speech.tokens.npy", tmp_path / "out.wav"
    main(["encode", str(tmp_path / "speech.wav"), "--tokenizer", str(tmp_path / "codec"), "-o", str(tokens)])
    codes = np.load(tokens)
    assert codes.shape == (1, 3, 200) and codes.max() < 16
    main(["decode", str(tokens), "--tokenizer", str(tmp_path / "codec"), "-o", str(out)])
    info = sf.info(str(out))
    assert info.samplerate == 8000 and info.frames == 4000 and info.channels == 1
    np.save(tmp_path / "two.npy", codes[:, :2])
    np.save(tmp_path / "big.npy", codes + 16)
    (tmp_path / "empty.wav").write_bytes(b"")
    _write(tmp_path / "silent.wav", np.zeros(800), 8000)
    main(["encode", str(tmp_path / "silent.wav"), "--tokenizer", str(tmp_path / "codec"), "-o", str(tokens)])
    bad = [
        ["decode", str(tmp_path / "two.npy"), "-o", str(tmp_path / "x.wav")],
        ["decode", str(tmp_path / "big.npy"), "-o", str(tmp_path / "x.wav")],
        ["decode", str(tokens), "-o", str(tmp_path / "x.mp4")],
        ["encode", str(tmp_path / "empty.wav"), "-o", str(tmp_path / "x.npy")],
        ["encode", str(tmp_path / "silent.wav"), "-o", str(tmp_path / "x.npy"), "--strict"],
    ]
    for argv in bad:
        with pytest.raises(SystemExit, match="codebooks|lie in|writes .wav|empty|silent"):
            main([*argv, "--tokenizer", str(tmp_path / "codec")])
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x*"))  # no partial outputs


def test_trains_with_the_generic_task_on_a_folder_of_files(tmp_path) -> None:
    import lightning as L

    from anytoken.tasks.data.audio_clips import AudioClipsDataModule
    from anytoken.tasks.tokenizer_training import ExportTokenizer, TokenizerTrainingModule

    folder = tmp_path / "wavs"
    folder.mkdir()
    for i, (rate, channels) in enumerate([(8000, 1), (22050, 2), (16000, 1)]):
        t = np.arange(rate // 2) / rate
        wave = 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t)
        _write(folder / f"{i}.{'flac' if i else 'wav'}", np.stack([wave] * channels, axis=1), rate)
    data = AudioClipsDataModule(
        sources=["folder"],
        folder=str(folder),
        sample_rate=8000,
        clip_seconds=0.25,
        num_train=8,
        num_val=1,
        val_fraction=0.34,
        batch_size=2,
    )
    assert data.val_names == ["folder"] and next(iter(data.train_dataloader())).shape == (2, 1, 2000)
    model = TokenizerTrainingModule(
        {"tokenizer": "audio_codec", "config": TINY}, warmup_steps=1, num_samples=1
    )
    trainer = L.Trainer(
        max_steps=2,
        val_check_interval=2,
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        logger=L.pytorch.loggers.CSVLogger(str(tmp_path), name="logs"),
        callbacks=[ExportTokenizer(str(tmp_path / "codec"))],
    )
    trainer.fit(model, datamodule=data)
    assert {"val/folder/si_snr", "val/folder/mel_distance", "val/codebook_usage"} <= set(
        trainer.callback_metrics
    )
    assert list(tmp_path.glob("logs/version_0/samples/folder_step*.wav"))  # input | reconstruction pairs
    assert isinstance(Tokenizer.from_pretrained(tmp_path / "codec"), AudioCodecTokenizer)
    with pytest.raises(ValueError, match="folder"):
        AudioClipsDataModule(sources=["folder"])
