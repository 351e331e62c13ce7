"""Spoken data without downloads: the scenes captions spoken by espeak-ng (exact transcripts; the
``heldout`` split has voices of its own), alsa-utils' recorded words (a held-out check on human speech),
and their audio codec codes.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from anytoken.atomic import atomic_path
from anytoken.tasks.data.synthetic.scenes import ScenesConfig, make_scenes
from anytoken.tokenizers.audio_codec import AudioCodecTokenizer
from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.audio_io import convert_channels, resample
from anytoken.tokenizers.base import Tokenizer

TRAIN_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-029", "en-gb-x-rp+f2")
HELDOUT_VOICES = ("en-gb-scotland+f4", "en-us-nyc+m5")  # spoken in the heldout split only
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


def espeak_path() -> str | None:
    """The ``espeak-ng`` executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


@dataclass(frozen=True)
class Utterance:
    """A text and how espeak-ng speaks it."""

    text: str
    voice: str = "en-us"
    speed: int = 175  # words per minute
    pitch: int = 50  # 0-99


def synthesize(utt: Utterance, sample_rate: int = 16000) -> torch.Tensor:
    """Speak ``utt`` with espeak-ng: mono ``[1, T]`` at ``sample_rate``, silence trimmed at both ends."""
    import soundfile as sf

    exe = espeak_path()
    if exe is None:
        raise RuntimeError(
            "espeak-ng is not installed (apt-get install espeak-ng): spoken data is synthesised with it"
        )
    if not utt.text.strip():
        raise ValueError("cannot speak an empty text")
    cmd = [exe, "-v", utt.voice, "-s", str(utt.speed), "-p", str(utt.pitch), "--stdout", "--stdin"]
    out = subprocess.run(cmd, input=utt.text.encode(), capture_output=True, timeout=60)
    if out.returncode != 0 or not out.stdout:
        raise RuntimeError(f"espeak-ng failed on {utt}: {out.stderr.decode(errors='replace')[:200]}")
    data, rate = sf.read(io.BytesIO(out.stdout), dtype="float32", always_2d=True)  # (T, C)
    wave = resample(convert_channels(torch.from_numpy(data.T.copy()), 1), rate, sample_rate)
    return trim_silence(wave, sample_rate).clamp(-1, 1)


def trim_silence(wave: torch.Tensor, sample_rate: int, threshold: float = 1e-3,
                 margin: float = 0.05) -> torch.Tensor:
    """Cut leading and trailing samples below ``threshold`` from ``wave`` ``[C, T]``, keeping ``margin`` s."""
    loud = (wave.abs().amax(0) > threshold).nonzero()
    if len(loud) == 0:
        return wave
    pad = int(margin * sample_rate)
    return wave[:, max(0, int(loud[0]) - pad) : int(loud[-1]) + pad + 1]


def synthesize_all(utterances: list[Utterance], sample_rate: int = 16000,
                   workers: int = 4) -> list[torch.Tensor]:
    """``synthesize`` every utterance (espeak-ng processes run in parallel)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda u: synthesize(u, sample_rate), utterances))


def spoken_scenes(split: str, num: int, scenes: ScenesConfig | None = None, seed: int = 0) -> list[Utterance]:
    """The captions of ``make_scenes(split, num)``, each with a voice, speed and pitch of its own."""
    rng = random.Random(f"anytoken-speech/{seed}/{split}")
    voices = HELDOUT_VOICES if split == "heldout" else TRAIN_VOICES
    return [
        Utterance(s.caption(), rng.choice(voices), rng.randint(160, 220), rng.randint(35, 65))
        for s in make_scenes(split, num, scenes or ScenesConfig())
    ]


def alsa_words(directory: str | Path = ALSA_SOUNDS) -> list[tuple[Path, str]]:
    """Recorded speech of alsa-utils: ``(path, transcript)``, e.g. ``Front_Left.wav`` -> "front left"
    (``Noise.wav`` is left out); empty when the package is not installed."""
    root = Path(directory)
    files = sorted(root.glob("*.wav")) if root.is_dir() else []
    return [(p, p.stem.replace("_", " ").lower()) for p in files if p.stem.lower() != "noise"]


def load_codec(path: str | None, spec: dict[str, Any] | None,
               num_codebooks: int | None) -> AudioCodes:
    """The codec saved at ``path`` (by ``anytoken fit --config configs/codec_speech16k.yaml``, or a Hugging
    Face EnCodec, DAC or Mimi directory: docs/pretrained_tokenizers.md), or, when ``path`` is None, an
    untrained one from ``spec`` (smoke tests); in eval mode with ``num_codebooks`` levels (None: the
    codec's own)."""
    if path is not None and spec is not None:
        raise ValueError("give codec_path (a trained codec) or codec (an untrained one's spec), not both")
    if path is None:
        rank_zero_warn("no codec_path, so an untrained codec makes the audio tokens")
        codec = AudioCodecTokenizer(**(spec or {}).get("config", {}))
    elif not Path(path).is_dir():
        raise ValueError(f"no codec at {path}: train it first (anytoken fit --config "
                         "configs/codec_speech16k.yaml writes runs/codec_speech16k/tokenizer)")
    else:
        codec = Tokenizer.from_pretrained(path)
        if not isinstance(codec, AudioCodes):
            raise ValueError(f"{path} holds a {codec.name} tokenizer, not an audio codec (audio_codec, "
                             "encodec, dac, mimi)")
    return codec.with_codebooks(num_codebooks).eval()


def codec_digest(codec: AudioCodes) -> str:
    """A hash of the codec's config and weights: what cached codes are keyed by."""
    h = hashlib.sha1(json.dumps(codec.config(), sort_keys=True).encode())
    for name, tensor in sorted(codec.state_dict().items()):
        if not name.startswith("discriminator."):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_waves(codec: AudioCodes, waves: list[torch.Tensor],
                 batch_size: int = 16) -> list[torch.Tensor]:
    """Codes ``[K, ceil(T_i / hop)]`` of each wave ``[C, T_i]`` (batched by length, zero-padded: the codec's
    convs pad with zeros anyway, so a padded batch gives each wave its own codes)."""
    order = sorted(range(len(waves)), key=lambda i: waves[i].shape[-1])
    out: list[torch.Tensor] = [torch.empty(0)] * len(waves)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        T = max(waves[i].shape[-1] for i in idx)
        batch = torch.stack([torch.nn.functional.pad(waves[i], (0, T - waves[i].shape[-1])) for i in idx])
        codes = codec.encode(batch).cpu()  # (b, K, T')
        for j, i in enumerate(idx):
            out[i] = codes[j, :, : -(-waves[i].shape[-1] // codec.hop_length)].clone()
    return out


def encode_utterances(
    codec: AudioCodes, utterances: list[Utterance], cache_dir: str | None, name: str
) -> list[torch.Tensor]:
    """Codes ``[K, T']`` of each utterance, spoken and encoded once: cached in ``cache_dir`` (when given)
    under ``name`` and a hash of the codec and the utterances."""
    key = hashlib.sha1(repr((codec_digest(codec), codec.sample_rate, utterances)).encode())
    path = Path(cache_dir) / f"speech_{name}_{key.hexdigest()[:16]}.pt" if cache_dir else None
    if path is not None and path.is_file():
        return torch.load(path, weights_only=True)
    codes = encode_waves(codec, synthesize_all(utterances, codec.sample_rate))
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(codes, tmp)
    return codes
