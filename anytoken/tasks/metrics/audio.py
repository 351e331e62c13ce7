"""Audio and transcript metrics: SI-SNR (dB, torchmetrics'), the multi-scale log-mel distance (the codec's
training loss and DAC's mel distance: 0 for identical signals, about 0.2-0.4 for good speech codecs, above 1
for poor ones), wide-band PESQ and STOI at 16 kHz (the ``pesq`` and ``pystoi`` packages, ``anytoken[bench]``),
bitrate and tokens per second of a tokenizer, and CER/WER of transcripts."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from anytoken.tokenizers.audio_losses import MultiScaleMel


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float ``[N, T]``, cut to the shorter length (decoders may return a few extra samples)."""
    ref, est = torch.as_tensor(reference).float(), torch.as_tensor(estimate).float()
    T = min(ref.shape[-1], est.shape[-1])
    if T == 0:
        raise ValueError("audio metrics need non-empty signals")
    ref, est = ref[..., :T], est[..., :T]
    if ref.shape != est.shape:
        raise ValueError(f"reference {tuple(ref.shape)} and estimate {tuple(est.shape)} differ beyond length")
    return ref.reshape(-1, T), est.reshape(-1, T)


def si_snr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Mean SI-SNR in dB of ``estimate`` against ``reference`` (``[..., T]``; lengths cut to the shorter)."""
    from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

    ref, est = _pair(reference, estimate)
    return float(scale_invariant_signal_noise_ratio(est, ref).mean())


@lru_cache(maxsize=4)
def _mel(sample_rate: int) -> MultiScaleMel:
    return MultiScaleMel(sample_rate)


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Mean multi-scale log-mel distance of ``estimate`` against ``reference`` (``[..., T]``)."""
    ref, est = _pair(reference, estimate)
    with torch.no_grad():
        return float(_mel(sample_rate).distance(est, ref))


PERCEPTUAL_RATE = 16000  # PESQ (wide band) and STOI are computed at 16 kHz


def _mono_16k(wave: torch.Tensor, sample_rate: int) -> np.ndarray:
    """Channels ``[C, T]`` of one signal -> float64 mono samples ``[T']`` at 16 kHz (channels averaged)."""
    from anytoken.tokenizers.audio_io import resample

    return resample(wave.mean(0, keepdim=True), sample_rate, PERCEPTUAL_RATE)[0].double().numpy()


def pesq_wb(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0-4.6) of one signal ``[C, T]`` against its reference, at 16 kHz.

    Raises:
        ImportError: ``pesq`` is not installed.
        ValueError: PESQ finds no speech in the reference (e.g. silence or a clip under ~0.3 s).
    """
    from pesq import PesqError, pesq

    ref, est = _pair(reference, estimate)
    try:
        return float(pesq(PERCEPTUAL_RATE, _mono_16k(ref, sample_rate), _mono_16k(est, sample_rate), "wb"))
    except PesqError as err:
        raise ValueError(f"PESQ cannot score this signal: {type(err).__name__} {err}") from None


def stoi(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """STOI (0-1, short-time objective intelligibility) of one signal ``[C, T]`` against its reference."""
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    return float(_stoi(_mono_16k(ref, sample_rate), _mono_16k(est, sample_rate), PERCEPTUAL_RATE))


def bitrate_kbps(tokenizer: Any) -> float:
    """Kilobits per second of audio (a tokenizer with ``frame_rate``, ``num_codebooks``, ``cardinality``)."""
    return tokenizer.frame_rate * tokenizer.num_codebooks * math.log2(tokenizer.cardinality) / 1000


def tokens_per_second(tokenizer: Any) -> float:
    """Tokens per second of audio, all codebook levels counted (a flattened stream's length per second)."""
    return float(tokenizer.frame_rate * tokenizer.num_codebooks)


def normalize_transcript(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def error_rates(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus ``cer`` and ``wer`` (edit distance over reference length, after ``normalize_transcript``) of
    transcripts, plus ``exact`` (the fraction transcribed without an error)."""
    from torchmetrics.functional.text import char_error_rate, word_error_rate

    if len(predictions) != len(references) or not references:
        raise ValueError(f"need as many predictions as references (> 0), "
                         f"got {len(predictions)}, {len(references)}")
    preds = [normalize_transcript(p) for p in predictions]
    refs = [normalize_transcript(r) for r in references]
    if any(not r for r in refs):
        raise ValueError("a reference transcript is empty after normalisation")
    return {"cer": float(char_error_rate(preds, refs)), "wer": float(word_error_rate(preds, refs)),
            "exact": sum(p == r for p, r in zip(preds, refs)) / len(refs)}
