"""The mu-law baseline: ranges, near-transparent round trip, bitrate, bad input, save/load and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from anytoken.cli import main
from anytoken.tasks.metrics.audio import bitrate_kbps, si_snr, tokens_per_second
from anytoken.tokenizers import MuLawTokenizer, Tokenizer


def voice(seconds: float = 0.5, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * math.pi * 180 * t) * torch.sin(math.pi * 3 * t).abs())[
        None, None
    ]  # (1, 1, T)


def test_round_trip_is_near_transparent_and_ids_in_range() -> None:
    tok = MuLawTokenizer()
    x = voice()
    ids = tok.encode(x)
    assert (
        ids.shape == (1, 1, 8000) and ids.dtype == torch.long and 0 <= int(ids.min()) and int(ids.max()) < 256
    )
    assert si_snr(x, tok.decode(ids)) > 30
    assert tok.reconstruction_error(x) < -30
    assert tok.decode(ids[0, 0]).shape == (1, 1, 8000)  # a mono [T] stream, as a TokenSpace segment
    assert tok.encode(x[0, 0], sample_rate=8000).shape == (1, 1, 16000)  # resampled by the policy


def test_bitrate_and_tokens_per_second() -> None:
    tok = MuLawTokenizer(sample_rate=16000, bits=8)
    assert tok.bitrate == 128_000 and bitrate_kbps(tok) == 128 and tokens_per_second(tok) == 16000
    assert bitrate_kbps(MuLawTokenizer(channels=2)) == 256


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.full((1, 100), float("nan")), "NaN"),
        (torch.zeros(0), "no samples"),
    ],
)
def test_bad_audio_is_rejected(bad: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MuLawTokenizer().encode(bad)


def test_bad_ids_are_rejected() -> None:
    tok = MuLawTokenizer()
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tok.decode(torch.tensor([0, 256]))
    with pytest.raises(ValueError, match="channels|\\[B, 1, T\\]"):
        tok.decode(torch.zeros(1, 2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="bits"):
        MuLawTokenizer(bits=1)


def test_save_load_and_cli(tmp_path) -> None:
    tok = MuLawTokenizer(sample_rate=8000)
    tok.save_pretrained(tmp_path / "mulaw")
    loaded = Tokenizer.from_pretrained(tmp_path / "mulaw")
    assert isinstance(loaded, MuLawTokenizer) and loaded.config() == tok.config()
    sf.write(str(tmp_path / "in.wav"), voice(0.25, 44100)[0, 0].numpy(), 44100)
    main(
        [
            "encode",
            str(tmp_path / "in.wav"),
            "--tokenizer",
            str(tmp_path / "mulaw"),
            "-o",
            str(tmp_path / "t.npy"),
        ]
    )
    assert np.load(tmp_path / "t.npy").shape == (1, 1, 2000)
    main(
        [
            "decode",
            str(tmp_path / "t.npy"),
            "--tokenizer",
            str(tmp_path / "mulaw"),
            "-o",
            str(tmp_path / "o.flac"),
        ]
    )
    assert sf.info(str(tmp_path / "o.flac")).samplerate == 8000
