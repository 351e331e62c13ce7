"""Fixed-length audio clips for training audio tokenizers: spoken scenes, or any folder of WAV/FLAC files.

Training clips are random crops of ``clip_seconds`` (a function of ``(seed, index)``, so every run sees the
same ones), zero-padded when a recording is shorter; silent crops are redrawn. A training crop reads only
its own stretch of a file (soundfile seeks), so folders of any size work. Batches are float tensors
``[B, C, T]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from anytoken.tasks.data.base import TokenizerDataModule
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import alsa_words, spoken_scenes, synthesize_all
from anytoken.tokenizers.audio_io import SILENCE, audio_files, convert_channels, read_audio, resample


def read_clip(path: Path, start: float, seconds: float, sample_rate: int, channels: int) -> torch.Tensor:
    """``seconds`` of ``path`` from ``start`` s as ``[channels, seconds * sample_rate]`` (zero-padded)."""
    import soundfile as sf

    info = sf.info(str(path))
    first = int(start * info.samplerate)
    frames = int(seconds * info.samplerate) + 64
    data, _ = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)  # (n, C)
    wave = resample(convert_channels(torch.from_numpy(data.T.copy()), channels), info.samplerate, sample_rate)
    return _fit(wave, int(seconds * sample_rate)).clamp(-1, 1)


def _fit(wave: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` samples of ``wave`` ``[C, T]``, zero-padded when shorter."""
    return F.pad(wave[:, :n], (0, max(0, n - wave.shape[-1])))


class Clips(Dataset):
    """Random crops of ``clip`` samples from in-memory waves ``[C, T_i]`` and/or files (read on demand).

    Args:
        waves: in-memory recordings.
        files: recordings read by ``read_clip``.
        num: crops per epoch.
        clip_seconds: crop length; sample_rate, channels: of the crops.
        seed: base seed of the crop positions.
    """

    def __init__(self, waves: list[torch.Tensor], files: list[Path], num: int, clip_seconds: float,
                 sample_rate: int, channels: int, seed: int = 0) -> None:
        import soundfile as sf

        if not waves and not files:
            raise ValueError("Clips needs recordings")
        self.waves, self.files, self.num, self.seed = waves, files, num, seed
        self.seconds, self.rate, self.channels = clip_seconds, sample_rate, channels
        self.durations = [sf.info(str(p)).duration for p in files]

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = random.Random(f"{self.seed}/{index}")
        n = int(self.seconds * self.rate)
        for _ in range(8):  # redraw silent crops
            pick = rng.randrange(len(self.waves) + len(self.files))
            if pick < len(self.waves):
                wave = self.waves[pick]
                start = rng.randint(0, max(0, wave.shape[-1] - n))
                clip = _fit(wave[:, start:], n)
            else:
                file = pick - len(self.waves)
                start = rng.uniform(0, max(0.0, self.durations[file] - self.seconds))
                clip = read_clip(self.files[file], start, self.seconds, self.rate, self.channels)
            if float(clip.abs().max()) > SILENCE:
                break
        return clip


def fixed_clips(waves: list[torch.Tensor], clip_seconds: float, sample_rate: int) -> torch.Tensor:
    """The first ``clip_seconds`` of each wave ``[C, T_i]`` (zero-padded): ``[N, C, clip]``."""
    return torch.stack([_fit(w, int(clip_seconds * sample_rate)) for w in waves])


class AudioClipsDataModule(TokenizerDataModule):
    """Audio clips ``[B, C, T]`` for ``TokenizerTrainingModule``.

    Validation sets (``val_names``): ``speech`` (spoken captions of the scenes' val split: seen voices,
    unseen sentences), ``alsa`` (alsa-utils' recorded human speech, held out from every training set) and
    ``folder`` (the last ``val_fraction`` of the folder's sorted files).

    Args:
        sources: ``"speech"`` (spoken scenes captions, espeak-ng) and/or ``"folder"``.
        folder: a folder of audio files, read recursively (source ``"folder"``).
        sample_rate, channels: of the clips (the tokenizer's); other files are converted.
        clip_seconds: clip length.
        num_train: training clips per epoch.
        num_utterances: spoken captions synthesised for training (source ``"speech"``).
        num_val: validation utterances or files per set (0: no validation).
        val_fraction: share of the folder's files kept for validation.
        scenes: which scenes are spoken.
        batch_size, num_workers, seed: as ``TokenizerDataModule``'s (seed also draws voices and crops).
    """

    def __init__(
        self,
        sources: list[Literal["speech", "folder"]] | None = None,
        folder: str | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        clip_seconds: float = 1.0,
        num_train: int = 100_000,
        num_utterances: int = 500,
        num_val: int = 32,
        val_fraction: float = 0.1,
        scenes: ScenesConfig | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        sources = list(sources or ["speech"])
        if not sources or set(sources) - {"speech", "folder"}:
            raise ValueError(f"sources must be a non-empty list of 'speech' and 'folder', got {sources}")
        if ("folder" in sources) != (folder is not None):
            raise ValueError("give folder exactly when sources includes 'folder'")
        if clip_seconds <= 0 or not 0 <= val_fraction < 1:
            raise ValueError(
                f"need clip_seconds > 0 and 0 <= val_fraction < 1: {clip_seconds}, {val_fraction}"
            )
        waves, files = [], []
        if "speech" in sources:
            waves = synthesize_all(spoken_scenes("train", num_utterances, scenes, seed), sample_rate)
            waves = [convert_channels(w, channels) for w in waves]
            if num_val > 0:
                val = synthesize_all(spoken_scenes("val", num_val, scenes, seed), sample_rate)
                val = [convert_channels(w, channels) for w in val]
                self.val_sets["speech"] = fixed_clips(val, clip_seconds, sample_rate)
                words = alsa_words()[:num_val]
                if words:
                    recorded = [read_audio(p, sample_rate, channels)[0] for p, _ in words]
                    self.val_sets["alsa"] = fixed_clips(recorded, clip_seconds, sample_rate)
        if "folder" in sources:
            found = audio_files(folder)
            n_val = min(num_val, int(len(found) * val_fraction)) if len(found) > 1 else 0
            files, held = found[: len(found) - n_val], found[len(found) - n_val :]
            if held:
                recorded = [read_audio(p, sample_rate, channels, max_clipped=1.0)[0] for p in held]
                self.val_sets["folder"] = fixed_clips(recorded, clip_seconds, sample_rate)
        self.train_set = Clips(waves, files, num_train, clip_seconds, sample_rate, channels, seed)
