"""Audio files in and out, and the policy that brings any file to a tokenizer's sample rate and channels.

``torchaudio.load`` needs torchcodec and FFmpeg, which a plain install lacks, so files are read and
written with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, AIFF, ...), and resampled with
``torchaudio.functional.resample``. The policy, applied in this order:

1. Channels: to mono, the mean of all channels; from mono to ``N`` channels, the one channel copied;
   from ``M > 1`` to ``N > 1`` channels (``M != N``), the mono downmix copied.
2. Sample rate: windowed-sinc resampling (torchaudio's default kernel) to the target rate, in chunks
   of ``chunk_seconds`` with enough context on both sides that the result equals resampling the
   whole signal (float rounding aside), so long files never need a second full-length buffer.
3. Checks (``check_wave``): no samples, NaN/inf, values outside ``[-1, 1]``, more than
   ``max_clipped`` of the samples at full scale (clipping) or digital silence raise ``ValueError``.

Files are read block by block (``block_seconds``), each block downmixed before the next is read, so
a long multichannel file costs one buffer at the target channel count.
"""

from __future__ import annotations

import math
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
    """Raise ``ValueError`` naming what is wrong with ``wave`` ``[..., T]`` (float samples in ``[-1, 1]``).

    Args:
        wave: the samples.
        what: how messages name the input (a file path, ``"encode input"``).
        max_clipped: the largest fraction of samples allowed at full scale.
        allow_silence: accept an all-silent signal (training crops may be silent; files may not).
    """
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
    """Resample ``wave`` ``[..., T]`` from ``orig_rate`` to ``new_rate`` Hz, in chunks with exact context.

    The output has ``ceil(T * new_rate / orig_rate)`` samples and equals
    ``torchaudio.functional.resample`` of the whole signal up to float rounding.
    """
    from torchaudio.functional import resample as ta_resample

    if orig_rate < 1 or new_rate < 1:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wave
    g = math.gcd(orig_rate, new_rate)
    a, b = orig_rate // g, new_rate // g  # input samples per period -> output samples per period
    width = math.ceil(6 * a / (min(a, b) * 0.99))  # torchaudio's kernel half-width (input periods)
    margin = a * (math.ceil((2 * width + a) / a) + 1)  # context on each side, a whole number of periods
    T = wave.shape[-1]
    step = max(a, int(chunk_seconds * orig_rate) // a * a)
    if T <= step + 2 * margin:
        return ta_resample(wave, orig_rate, new_rate)
    out = []
    for start in range(0, T, step):
        stop = min(start + step, T)
        lo, hi = max(0, start - margin), min(T, stop + margin)
        y = ta_resample(wave[..., lo:hi], orig_rate, new_rate)  # (..., ceil((hi - lo) * b / a))
        first = (start - lo) // a * b
        out.append(y[..., first : first + math.ceil((stop - start) * b / a)])
    return torch.cat(out, dim=-1)


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: int | None = None,
    *,
    max_clipped: float = 0.01,
    block_seconds: float = 60.0,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 ``[channels, T]`` in ``[-1, 1]`` by the module's policy.

    Args:
        path: any file libsndfile reads (WAV, FLAC, OGG, AIFF, ...).
        sample_rate: resample to this rate (None: keep the file's).
        channels: convert to this many channels (None: keep the file's).
        max_clipped: see ``check_wave``.
        block_seconds: read this much at a time.

    Returns:
        ``(wave, sample_rate)``.
    """
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
    """Write ``wave`` ``[C, T]`` (or ``[T]``) to a 16-bit PCM WAV or FLAC file chosen by the suffix.

    Samples are clipped to ``[-1, 1]`` (a decoder may overshoot). The caller makes the write atomic.
    """
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


def prepare_wave(
    wave: torch.Tensor, channels: int, target_rate: int, sample_rate: int | None = None, what: str = "audio"
) -> torch.Tensor:
    """Waves ``[B, C, T]``, ``[C, T]`` or ``[T]`` at ``sample_rate`` (None: already ``target_rate``) ->
    float ``[B, channels, T']`` at ``target_rate``, checked by ``check_wave`` and converted by the policy."""
    if not isinstance(wave, torch.Tensor):
        raise ValueError(
            f"{what}: takes a float tensor of samples, got {type(wave).__name__} (read files with read_media)"
        )
    x = wave.reshape(1, 1, -1) if wave.dim() == 1 else wave[None] if wave.dim() == 2 else wave
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"{what}: needs waves [B, C, T], [C, T] or [T], got shape {tuple(wave.shape)}")
    check_wave(x, what)
    x = convert_channels(x.float(), channels)
    if sample_rate is not None and sample_rate != target_rate:
        x = resample(x, sample_rate, target_rate)
    return x


class AudioMedia:
    """``read_media``/``write_media`` of audio tokenizers, which define ``sample_rate`` and ``channels``."""

    sample_rate: int
    channels: int

    def read_media(self, path: Path) -> torch.Tensor:
        """An audio file -> ``[1, channels, T]`` at ``sample_rate`` (``read_audio``'s policy and checks)."""
        return read_audio(path, self.sample_rate, self.channels)[0][None]

    def write_media(self, media: torch.Tensor, path: Path) -> None:
        """Waves ``[C, T]`` or ``[B, C, T]`` (written one after another) -> a WAV or FLAC file."""
        wave = media if media.dim() <= 2 else media.transpose(0, 1).reshape(media.shape[1], -1)
        write_audio(path, wave, self.sample_rate)
