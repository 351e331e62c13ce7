"""Fixed-length audio clips for training audio tokenizers: spoken scenes, or any folder of WAV/FLAC files.

Training clips are random crops (a function of ``(seed, index)``, so every run sees the same ones) of
``clip_seconds``, zero-padded when a recording is shorter; crops that are silent are redrawn. A folder
is read recursively (``audio_io.audio_files``); its sorted files are split by ``val_fraction``, and a
training crop reads only its own stretch of a file (soundfile seeks), so folders of any size work.
Files at other sample rates or channel counts follow ``audio_io``'s policy.

Validation sets (``val_names``): ``speech`` (spoken captions of the scenes' val split: seen voices,
unseen sentences), ``alsa`` (recorded human speech from alsa-utils, held out from every training set)
and ``folder`` (the folder's validation files). Batches are float tensors ``[B, C, T]`` in ``[-1, 1]``,
what ``TokenizerTrainingModule`` takes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from anytoken.tasks.data.sampling import SeededSampler
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import alsa_words, spoken_scenes, synthesize_all
from anytoken.tokenizers.audio_io import SILENCE, audio_files, convert_channels, read_audio, resample

Source = Literal["speech", "folder"]


def read_clip(path: Path, start: float, seconds: float, sample_rate: int, channels: int) -> torch.Tensor:
    """``seconds`` of ``path`` from ``start`` s as ``[channels, seconds * sample_rate]`` (zero-padded)."""
    import soundfile as sf

    info = sf.info(str(path))
    first = int(start * info.samplerate)
    data, _ = sf.read(
        str(path), start=first, frames=int(seconds * info.samplerate) + 64, dtype="float32", always_2d=True
    )  # (n, C)
    wave = resample(convert_channels(torch.from_numpy(data.T.copy()), channels), info.samplerate, sample_rate)
    n = int(seconds * sample_rate)
    return F.pad(wave[:, :n], (0, max(0, n - wave.shape[-1]))).clamp(-1, 1)


class Clips(Dataset):
    """Random crops of ``clip`` samples from in-memory waves ``[C, T_i]`` and/or files (read on demand).

    Args:
        waves: in-memory recordings.
        files: recordings read by ``read_clip``.
        num: crops per epoch.
        clip_seconds: crop length; sample_rate, channels: of the crops.
        seed: base seed of the crop positions.
    """

    def __init__(
        self,
        waves: list[torch.Tensor],
        files: list[Path],
        num: int,
        clip_seconds: float,
        sample_rate: int,
        channels: int,
        seed: int = 0,
    ) -> None:
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
                clip = F.pad(wave[:, start : start + n], (0, max(0, start + n - wave.shape[-1])))
            else:
                duration = self.durations[pick - len(self.waves)]
                start = rng.uniform(0, max(0.0, duration - self.seconds))
                clip = read_clip(
                    self.files[pick - len(self.waves)], start, self.seconds, self.rate, self.channels
                )
            if float(clip.abs().max()) > SILENCE:
                break
        return clip[:, :n]


def fixed_clips(waves: list[torch.Tensor], clip_seconds: float, sample_rate: int) -> torch.Tensor:
    """The first ``clip_seconds`` of each wave ``[C, T_i]`` (zero-padded): ``[N, C, clip]``."""
    n = int(clip_seconds * sample_rate)
    return torch.stack([F.pad(w[:, :n], (0, max(0, n - w.shape[-1]))) for w in waves])


class AudioClipsDataModule(L.LightningDataModule):
    """Audio clips ``[B, C, T]`` for ``TokenizerTrainingModule``.

    Args:
        sources: ``"speech"`` (spoken scenes captions, espeak-ng) and/or ``"folder"``.
        folder: a folder of audio files (source ``"folder"``).
        sample_rate: Hz of the clips (the tokenizer's).
        channels: channels of the clips (the tokenizer's).
        clip_seconds: clip length.
        num_train: training clips per epoch.
        num_utterances: spoken captions synthesised for training (source ``"speech"``).
        num_val: validation utterances or files per set (0: no validation).
        val_fraction: share of the folder's files kept for validation.
        scenes: which scenes are spoken.
        batch_size: training batch size; validation uses the same.
        num_workers: DataLoader worker processes.
        seed: seed of the voices, crops and shuffling.
    """

    def __init__(
        self,
        sources: list[Source] | None = None,
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
        super().__init__()
        sources = list(sources or ["speech"])
        if not sources or set(sources) - {"speech", "folder"}:
            raise ValueError(f"sources must be a non-empty list of 'speech' and 'folder', got {sources}")
        if ("folder" in sources) != (folder is not None):
            raise ValueError("give folder exactly when sources includes 'folder'")
        if clip_seconds <= 0 or not 0 <= val_fraction < 1:
            raise ValueError(
                f"need clip_seconds > 0 and 0 <= val_fraction < 1: {clip_seconds}, {val_fraction}"
            )
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        waves, files, self.val_sets = [], [], {}
        if "speech" in sources:
            waves = synthesize_all(spoken_scenes("train", num_utterances, scenes, seed), sample_rate)
            waves = [convert_channels(w, channels) for w in waves]
            if num_val > 0:
                val = synthesize_all(spoken_scenes("val", num_val, scenes, seed), sample_rate)
                self.val_sets["speech"] = fixed_clips(
                    [convert_channels(w, channels) for w in val], clip_seconds, sample_rate
                )
                words = alsa_words()[:num_val]
                if words:
                    recorded = [read_audio(p, sample_rate, channels)[0] for p, _ in words]
                    self.val_sets["alsa"] = fixed_clips(recorded, clip_seconds, sample_rate)
        if "folder" in sources:
            found = audio_files(folder)
            n_val = min(num_val, int(len(found) * val_fraction)) if len(found) > 1 else 0
            files = found[: len(found) - n_val]
            if n_val:
                held = [
                    read_audio(p, sample_rate, channels, max_clipped=1.0)[0]
                    for p in found[len(found) - n_val :]
                ]
                self.val_sets["folder"] = fixed_clips(held, clip_seconds, sample_rate)
        self.train_set = Clips(waves, files, num_train, clip_seconds, sample_rate, channels, seed)

    @property
    def val_names(self) -> list[str]:
        """Names of the validation loaders, in order (the training task logs metrics under them)."""
        return list(self.val_sets)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=SeededSampler(len(self.train_set), self.seed),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(v, batch_size=self.batch_size) for v in self.val_sets.values()]

    def test_dataloader(self) -> list[DataLoader]:
        return self.val_dataloader()
