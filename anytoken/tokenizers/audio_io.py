"""Audio files in and out (soundfile: ``torchaudio.load`` would need torchcodec and FFmpeg), and the policy
that brings any signal to a tokenizer's sample rate and channels, in this order:

1. Channels: to mono, the mean of all channels; to ``N`` channels, the mono signal copied.
2. Sample rate: ``torchaudio.functional.resample`` in chunks with exact context on both sides, so the
   result equals resampling the whole signal without a second full-length buffer. Files are read block
   by block, each block downmixed first (one buffer at the target channel count).
3. ``check_wave``: no samples, NaN/inf, values outside ``[-1, 1]``, more than ``max_clipped`` of the
   samples at full scale (clipping) or digital silence raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}  # suffix -> soundfile format (16-bit PCM)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")  # what folders are scanned for
FULL_SCALE = 0.9999  # |x| at or above this counts as a clipped sample
SILENCE = 1e-5  # peak below this counts as silence


def check_wave(
    wave: torch.Tensor, what: str = "audio", max_clipped: float = 0.01, allow_silence: bool = False
) -> None:
    """Raise ``ValueError`` naming what is wrong with ``wave`` ``[..., T]`` (float samples in ``[-1, 1]``);
    ``what`` names the input, ``max_clipped`` is the largest fraction of samples allowed at full scale, and
    ``allow_silence`` accepts a silent signal (training crops may be silent; files may not)."""
    if not isinstance(wave, torch.Tensor) or not wave.is_floating_point():
        raise ValueError(
            f"{what}: audio must be a float tensor of samples in [-1, 1], got "
            f"{type(wave).__name__} {getattr(wave, 'dtype', '')}"
        )
    if wave.numel() == 0 or wave.shape[-1] == 0:
        raise ValueError(f"{what}: the audio has no samples (shape {tuple(wave.shape)})")
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{what}: the audio has NaN or infinite samples")
    peak = float(wave.abs().max())
    if peak > 1.0 + 1e-6:
        raise ValueError(
            f"{what}: samples reach {peak:.3g}, outside [-1, 1] (unnormalised or clipped audio: "
            "divide integer PCM by its full scale, or scale the signal down)"
        )
    clipped = float((wave.abs() >= FULL_SCALE).float().mean())
    if clipped > max_clipped:
        raise ValueError(
            f"{what}: {clipped:.1%} of the samples sit at full scale (clipped audio; at most "
            f"{max_clipped:.1%} allowed)"
        )
    if peak < SILENCE and not allow_silence:
        raise ValueError(f"{what}: the audio is silent (peak {peak:.1e}): nothing to tokenize")


def convert_channels(wave: torch.Tensor, channels: int) -> torch.Tensor:
    """``[..., C, T]`` -> ``[..., channels, T]`` by the module's channel policy."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    have = wave.shape[-2]
    if have == channels:
        return wave
    mono = wave.mean(dim=-2, keepdim=True) if have > 1 else wave  # (..., 1, T)
    return mono.expand(*mono.shape[:-2], channels, mono.shape[-1]).contiguous()


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int, chunk_seconds: float = 30.0) -> torch.Tensor:
    """Resample ``wave`` ``[..., T]`` to ``ceil(T * new_rate / orig_rate)`` samples at ``new_rate`` Hz, equal
    to ``torchaudio.functional.resample`` of the whole signal up to float rounding."""
    from torchaudio.functional import resample as ta_resample

    if orig_rate < 1 or new_rate < 1:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wave
    g = math.gcd(orig_rate, new_rate)
    a, b = orig_rate // g, new_rate // g  # a period: a input samples -> b output samples
    width = math.ceil(6 * a / (min(a, b) * 0.99))  # torchaudio's kernel half-width (input periods)
    context = math.ceil((2 * width + a) / a) + 1  # periods on each side
    periods, chunk = math.ceil(wave.shape[-1] / a), max(1, int(chunk_seconds * orig_rate) // a)
    return chunked(lambda w: ta_resample(w, orig_rate, new_rate), wave, periods, chunk, context, a, b)


def chunked(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    frames: int,
    chunk: int,
    context: int,
    f_in: int,
    f_out: int,
) -> torch.Tensor:
    """``fn`` over ``x`` ``[..., frames * f_in]`` (``f_in`` samples per frame; it maps each to ``f_out``), in
    chunks of ``chunk`` frames with ``context`` frames on each side, so that a function of a bounded window
    gives its whole-signal result (the last frame may be partial)."""
    if frames <= chunk + 2 * context:
        return fn(x)
    out = []
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        lo, hi = max(0, start - context), min(frames, stop + context)
        y = fn(x[..., lo * f_in : hi * f_in])  # (..., (hi - lo) * f_out)
        out.append(y[..., (start - lo) * f_out : (stop - lo) * f_out])
    return torch.cat(out, dim=-1)


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: int | None = None,
    *,
    max_clipped: float = 0.01,
    block_seconds: float = 60.0,
) -> tuple[torch.Tensor, int]:
    """``(wave, sample_rate)``: any file libsndfile reads, as float32 ``[channels, T]`` in ``[-1, 1]`` by the
    policy, at ``sample_rate`` and ``channels`` (None: the file's), read ``block_seconds`` at a time."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(
            f"{path}: not a supported audio file (soundfile reads WAV, FLAC, OGG, AIFF, ...): {err}"
        ) from None
    if info.frames <= 0:
        raise ValueError(f"{path}: the audio has no samples")
    target_channels = channels or info.channels
    wave = np.empty((target_channels, info.frames), dtype=np.float32)
    filled = 0
    block = max(1, int(block_seconds * info.samplerate))
    try:
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):  # (n, C)
            converted = convert_channels(torch.from_numpy(chunk.T.copy()), target_channels)  # (C', n)
            wave[:, filled : filled + converted.shape[-1]] = converted.numpy()
            filled += converted.shape[-1]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"{path}: the audio could not be decoded ({err})") from None
    out = torch.from_numpy(wave[:, :filled])
    check_wave(out, str(path), max_clipped=max_clipped)
    rate = sample_rate or info.samplerate
    return resample(out, info.samplerate, rate).clamp(-1, 1).contiguous(), rate  # clamp: sinc overshoot


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write ``wave`` ``[C, T]`` (or ``[T]``), clipped to ``[-1, 1]``, to a 16-bit PCM WAV or FLAC file
    chosen by the suffix. The caller makes the write atomic."""
    import soundfile as sf

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise ValueError(
            f"{path}: audio is written as {' or '.join(WRITE_FORMATS)}, not {suffix or 'no suffix'}"
        )
    wave = wave.detach().float().cpu()
    wave = wave[None] if wave.dim() == 1 else wave
    if wave.dim() != 2 or wave.shape[-1] == 0:
        raise ValueError(f"write_audio needs samples [C, T] with T > 0, got shape {tuple(wave.shape)}")
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{path}: refusing to write NaN or infinite samples")
    sf.write(
        str(path), wave.clamp(-1, 1).t().numpy(), sample_rate, format=WRITE_FORMATS[suffix], subtype="PCM_16"
    )


def audio_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursive, sorted, by suffix); ``ValueError`` if there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"audio folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return files


class AudioMedia:
    """Input policy and media files of audio tokenizers, which define ``sample_rate`` and ``channels``."""

    name: str
    sample_rate: int
    channels: int

    def prepare(self, wave: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Waves ``[B, C, T]``, ``[C, T]`` or ``[T]`` at ``sample_rate`` (None: the tokenizer's) -> float
        ``[B, channels, T']`` at the tokenizer's rate, checked by ``check_wave``, converted by the policy."""
        what = f"{self.name}.encode"
        if not isinstance(wave, torch.Tensor):
            raise ValueError(
                f"{what}: takes a float tensor of samples, got {type(wave).__name__} "
                "(read files with read_media)"
            )
        x = wave.reshape(1, 1, -1) if wave.dim() == 1 else wave[None] if wave.dim() == 2 else wave
        if x.dim() != 3 or x.shape[0] == 0:
            raise ValueError(f"{what}: needs waves [B, C, T], [C, T] or [T], got shape {tuple(wave.shape)}")
        check_wave(x, what)
        x = convert_channels(x.float(), self.channels)
        return x if sample_rate is None else resample(x, sample_rate, self.sample_rate)

    def read_media(self, path: Path) -> torch.Tensor:
        """An audio file -> ``[1, channels, T]`` at ``sample_rate`` (``read_audio``'s policy and checks)."""
        return read_audio(path, self.sample_rate, self.channels)[0][None]

    def write_media(self, media: torch.Tensor, path: Path) -> None:
        """Waves ``[C, T]`` or ``[B, C, T]`` (written one after another) -> a WAV or FLAC file."""
        wave = media if media.dim() <= 2 else media.transpose(0, 1).reshape(media.shape[1], -1)
        write_audio(path, wave, self.sample_rate)
