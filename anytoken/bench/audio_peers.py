"""The audio peers: Opus (``opusenc``/``opusdec``) and Codec2 (``c2enc``/``c2dec``) at the setting nearest a
bitrate, and 8-bit mu-law. Each codes a set's clips as one stream (so Ogg headers do not inflate a short
clip's bitrate) that is cut back into the clips; a tool that is not installed gives a row saying so."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anytoken.tokenizers.audio_io import resample, write_audio

OPUS_KBPS = (6.0, 256.0)  # opusenc's range per channel
CODEC2_MODES = {3200: "3200", 2400: "2400", 1600: "1600", 1400: "1400", 1300: "1300", 1200: "1200",
                700: "700C", 450: "450"}  # bit/s -> c2enc's mode name (narrow band, 8 kHz)
TOOLS = {"Opus": ("opusenc", "opusdec", "opus-tools"), "Codec2": ("c2enc", "c2dec", "codec2")}


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True)
    if out.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr.decode(errors='replace')[:300]}")


def missing_tool(peer: str) -> str | None:
    """Why ``peer`` ("Opus" or "Codec2") cannot run here, or None when its tools are on PATH."""
    encoder, decoder, package = TOOLS[peer]
    absent = [tool for tool in (encoder, decoder) if shutil.which(tool) is None]
    return f"{' and '.join(absent)} not on PATH (apt-get install {package})" if absent else None


def opus(wave: torch.Tensor, rate: int, kbps: float, tmp: Path) -> tuple[torch.Tensor, float]:
    """Opus round trip of ``wave`` ``[C, T]`` at ``kbps``: (decoded ``[C, T']``, kbps of the .opus file)."""
    write_audio(tmp / "in.wav", wave, rate)
    _run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", str(tmp / "in.wav"), str(tmp / "x.opus")])
    _run(["opusdec", "--quiet", "--rate", str(rate), str(tmp / "x.opus"), str(tmp / "out.wav")])
    import soundfile as sf

    data, _ = sf.read(tmp / "out.wav", dtype="float32", always_2d=True)  # (T', C)
    measured = (tmp / "x.opus").stat().st_size * 8 / 1000 / (wave.shape[-1] / rate)
    return torch.from_numpy(data.T.copy()), measured


def codec2(wave: torch.Tensor, rate: int, bps: int, tmp: Path) -> torch.Tensor:
    """Codec2 round trip of ``wave`` ``[C, T]`` (mono, at 8 kHz) at ``bps`` bit/s, back at ``rate``."""
    narrow = resample(wave.mean(0, keepdim=True), rate, 8000)
    (tmp / "in.raw").write_bytes((narrow[0].clamp(-1, 1) * 32767).round().short().numpy().tobytes())
    _run(["c2enc", CODEC2_MODES[bps], str(tmp / "in.raw"), str(tmp / "x.c2")])
    _run(["c2dec", CODEC2_MODES[bps], str(tmp / "x.c2"), str(tmp / "out.raw")])
    decoded = np.frombuffer((tmp / "out.raw").read_bytes(), dtype=np.int16).astype(np.float32) / 32768
    return resample(torch.from_numpy(decoded)[None], 8000, rate).expand(wave.shape[0], -1)


def split_like(wave: torch.Tensor, clips: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cut ``wave`` ``[C, T]`` (a round trip of ``clips`` ``[C, T_i]`` one after another) back into them."""
    lengths = [c.shape[-1] for c in clips]
    wave = torch.nn.functional.pad(wave, (0, max(0, sum(lengths) - wave.shape[-1])))
    return list(wave[..., : sum(lengths)].split(lengths, dim=-1))


def _as_stream(
    clips: list[torch.Tensor], code: Callable[[torch.Tensor, Path], Any]
) -> tuple[list[torch.Tensor], Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = code(torch.cat(clips, dim=-1), Path(tmp))
    wave, extra = out if isinstance(out, tuple) else (out, None)
    return split_like(wave, clips), extra


def peer_outputs(
    peer: str, kbps: float, clips: list[torch.Tensor], rate: int
) -> tuple[dict[str, Any], list[torch.Tensor] | None]:
    """``(row, decoded clips)`` of ``peer`` ("Opus", "Codec2", "mu-law") at the setting nearest ``kbps``
    on ``clips`` ``[C, T_i]`` at ``rate``; decoded is None and the row says why when a tool is missing."""
    if peer == "mu-law":
        from anytoken.tokenizers import MuLawTokenizer

        mulaw = MuLawTokenizer(sample_rate=rate, channels=clips[0].shape[0])
        outs = [mulaw.decode(mulaw.encode(c))[0] for c in clips]
        return {"system": "mu-law 8 bit", "kbps": mulaw.bitrate / 1000,
                "tokens_per_s": float(mulaw.frame_rate * mulaw.num_codebooks)}, outs
    if peer == "Opus":
        setting = float(min(max(kbps, OPUS_KBPS[0]), OPUS_KBPS[1]))
        row = {"system": f"Opus {setting:g} kbps", "kbps": setting}
    else:
        bps = min(CODEC2_MODES, key=lambda mode: (abs(mode - kbps * 1000), mode))
        row = {"system": f"Codec2 {CODEC2_MODES[bps]}", "kbps": bps / 1000}
    if (why := missing_tool(peer)) is not None:
        return row | {"missing": {"peer": why}, "note": f"missing: {why}"}, None
    if peer == "Opus":
        outs, measured = _as_stream(clips, lambda wave, tmp: opus(wave, rate, setting, tmp))
        return row | {"file_kbps": measured, "note": f"Ogg Opus file: {measured:.2f} kbps"}, outs
    outs, _ = _as_stream(clips, lambda wave, tmp: codec2(wave, rate, bps, tmp))
    return row | {"note": "narrow band: coded at 8 kHz"}, outs
