"""Audio files in and out (soundfile: ``torchaudio.load`` would need torchcodec and FFmpeg), and the policy
that brings any signal to a tokenizer's sample rate and channels, in this order:

1. Channels: to mono, the mean of all channels; to ``N`` channels, the mono signal copied.
2. Sample rate: ``torchaudio.functional.resample`` in chunks with exact context on both sides, so the
   result equals resampling the whole signal without a second full-length buffer. Its sinc kernel grows
   with the terms of the reduced ratio (8001 -> 16000 Hz would need gigabytes), so a ratio whose terms
   exceed ``MAX_RATIO_TERM`` goes to ``soxr`` (libsoxr's polyphase resampler: any ratio, exactly, with a
   small fixed kernel); every common pair of rates (8/11.025/16/22.05/24/32/44.1/48 kHz) stays on the
   torchaudio path. Rates below ``MIN_SAMPLE_RATE`` are refused. Files are read block by block, each block
   downmixed first (one buffer at the target channel count).
3. ``check_wave``: no samples, NaN or inf raise ``ValueError``. Samples outside ``[-1, 1]``, more than
   ``max_clipped`` of them at full scale (clipping) and digital silence are valid input: the first two are
   clamped, and each gives a ``MediaWarning``, which ``--strict`` (or a warnings filter) makes an error.
4. Files: a file whose samples end before its header says (a truncated WAV or FLAC) is refused.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from anytoken.tokenizers.base import MediaWarning

WRITE_FORMATS = {  # suffix -> soundfile (format, subtype)
    ".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".aiff": ("AIFF", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".mp3": ("MP3", "MPEG_LAYER_III"),
}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".aiff", ".aif", ".mp3")  # what folders are scanned for
MIN_SAMPLE_RATE = 4000  # Hz; below it a second of audio is a handful of samples, not speech or music
MAX_RATIO_TERM = 1000  # larger terms of a reduced rate ratio go to soxr (torchaudio's kernel grows with them)
FULL_SCALE = 0.9999  # |x| at or above this counts as a clipped sample
SILENCE = 1e-5  # peak below this counts as silence


def check_wave(wave: torch.Tensor, what: str = "audio", max_clipped: float = 0.01) -> torch.Tensor:
    """``wave`` ``[..., T]`` (float samples, nominally in ``[-1, 1]``) by the module's policy: ``ValueError``
    naming ``what`` for no samples or NaN/inf; clamped to ``[-1, 1]`` with a ``MediaWarning`` when samples
    lie outside or more than ``max_clipped`` of them sit at full scale; a ``MediaWarning`` for silence."""
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
    clipped = float((wave.abs() >= FULL_SCALE).float().mean())
    if peak > 1.0 + 1e-6:
        warnings.warn(f"{what}: samples reach {peak:.3g}, outside [-1, 1]: clamped (unnormalised audio? "
                      "divide integer PCM by its full scale)", MediaWarning, stacklevel=2)
    elif clipped > max_clipped:
        warnings.warn(f"{what}: {clipped:.1%} of the samples sit at full scale (clipped audio)",
                      MediaWarning, stacklevel=2)
    if peak < SILENCE:
        warnings.warn(f"{what}: the audio is silent (peak {peak:.1e})", MediaWarning, stacklevel=2)
    return wave.clamp(-1, 1) if peak > 1.0 else wave


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
    to ``torchaudio.functional.resample`` of the whole signal up to float rounding (``soxr`` for a ratio
    with terms above ``MAX_RATIO_TERM``, as the module's policy says)."""
    from torchaudio.functional import resample as ta_resample

    a, b = resampling_ratio(orig_rate, new_rate)  # a period: a input samples -> b output samples
    if a == b:
        return wave
    if max(a, b) > MAX_RATIO_TERM:
        return _soxr_resample(wave, orig_rate, new_rate)
    width = math.ceil(6 * a / (min(a, b) * 0.99))  # torchaudio's kernel half-width (input periods)
    context = math.ceil((2 * width + a) / a) + 1  # periods on each side
    periods, chunk = math.ceil(wave.shape[-1] / a), max(1, int(chunk_seconds * orig_rate) // a)
    return chunked(lambda w: ta_resample(w, orig_rate, new_rate), wave, periods, chunk, context, a, b)


def resampling_ratio(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """``(a, b)``: the reduced ratio, ``a`` input samples to ``b`` output samples; ``ValueError`` for a rate
    below ``MIN_SAMPLE_RATE``."""
    for name, rate in (("input", orig_rate), ("output", new_rate)):
        if not isinstance(rate, int) or rate < MIN_SAMPLE_RATE:
            raise ValueError(f"the {name} sample rate is {rate} Hz; anytoken reads and writes audio at "
                             f"{MIN_SAMPLE_RATE} Hz or more")
    g = math.gcd(orig_rate, new_rate)
    return orig_rate // g, new_rate // g


def _soxr_resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """``resample`` by libsoxr ("VHQ"), whose kernel does not depend on the ratio's terms."""
    import soxr

    flat = wave.reshape(-1, wave.shape[-1]).t().contiguous().numpy()  # (T, channels) as soxr takes it
    out = soxr.resample(flat, orig_rate, new_rate, quality="VHQ")  # (T', channels)
    n = math.ceil(wave.shape[-1] * new_rate / orig_rate)
    out = np.pad(out[:n], ((0, max(0, n - len(out))), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(out.T)).reshape(*wave.shape[:-1], n).to(wave.dtype)


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
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise ValueError(f"{path}: not a valid audio file, or one in a format libsndfile cannot read "
                         f"(anytoken reads {', '.join(AUDIO_SUFFIXES)})") from None
    if info.frames <= 0:
        raise ValueError(f"{path}: the audio has no samples")
    resampling_ratio(info.samplerate, sample_rate or info.samplerate)  # rates within the policy
    _check_wav_length(path)
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
    if filled < info.frames:
        raise ValueError(f"{path}: truncated: the header promises {info.frames} frames, "
                         f"the file holds {filled}")
    out = check_wave(torch.from_numpy(wave), str(path), max_clipped=max_clipped)
    rate = sample_rate or info.samplerate
    return resample(out, info.samplerate, rate).clamp(-1, 1).contiguous(), rate  # clamp: sinc overshoot


def _check_wav_length(path: Path) -> None:
    """``ValueError`` when a RIFF WAV file's ``data`` chunk promises more bytes than the file holds
    (libsndfile reads such a file silently, as far as it goes). Other files are left alone."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(12)
        if header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                held = size - offset - 8
                if length not in (0, 0xFFFFFFFF) and length > held:  # 0 / ~0: streamed, length unknown
                    raise ValueError(f"{path}: truncated: the WAV header promises {length} bytes of samples, "
                                     f"the file holds {held}")
                return
            offset += 8 + length + (length & 1)


def write_audio(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write ``wave`` ``[C, T]`` (or ``[T]``), clipped to ``[-1, 1]``, in the format of the suffix
    (``WRITE_FORMATS``: 16-bit PCM WAV, FLAC, AIFF; OGG Vorbis; MP3). The caller makes the write atomic."""
    import soundfile as sf

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise ValueError(f"{path}: audio is written as {', '.join(WRITE_FORMATS)}, "
                         f"not {suffix or 'no suffix'}")
    wave = wave.detach().float().cpu()
    wave = wave[None] if wave.dim() == 1 else wave
    if wave.dim() != 2 or wave.shape[-1] == 0:
        raise ValueError(f"write_audio needs samples [C, T] with T > 0, got shape {tuple(wave.shape)}")
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{path}: refusing to write NaN or infinite samples")
    kind, subtype = WRITE_FORMATS[suffix]
    sf.write(str(path), wave.clamp(-1, 1).t().numpy(), sample_rate, format=kind, subtype=subtype)


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
    write_suffixes = tuple(WRITE_FORMATS)

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
        x = convert_channels(check_wave(x, what).float(), self.channels)
        return x if sample_rate is None else resample(x, sample_rate, self.sample_rate)

    def read_media(self, path: Path) -> torch.Tensor:
        """An audio file -> ``[1, channels, T]`` at ``sample_rate`` (``read_audio``'s policy and checks)."""
        return read_audio(path, self.sample_rate, self.channels)[0][None]

    def write_media(self, media: torch.Tensor, path: Path) -> None:
        """Waves ``[C, T]`` or ``[B, C, T]`` (written one after another) -> an audio file
        (``write_audio``)."""
        wave = media if media.dim() <= 2 else media.transpose(0, 1).reshape(media.shape[1], -1)
        write_audio(path, wave, self.sample_rate)
