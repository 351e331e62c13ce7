"""Spoken data without downloads: the scenes captions spoken by espeak-ng, and recorded words from ALSA.

``espeak-ng`` (Debian package ``espeak-ng``) synthesises every caption of the procedural scenes
(``tasks.data.scenes``), so audio <-> text tasks have real (if robotic) speech with exact transcripts.
Each utterance's voice, speed and pitch are drawn from ``(seed, split, index)``; the ``heldout`` split
(scenes with unseen colour-shape pairs) is spoken by voices no other split uses. Debian's
``alsa-utils`` ships recorded human speech, ``/usr/share/sounds/alsa/{Front,Rear,Side}_*.wav``, whose
file names are the transcripts ("front left"): a held-out check on real recordings.

``SpeechDataModule`` serves both speech tasks: it loads (or first trains) the audio codec, encodes
every utterance once (cached on disk, keyed by the codec's config and weights and the utterances), and
yields batches ``{"texts", "text_ids", "codes", "ids"}`` with codes ``[K, T']`` per utterance.
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import json
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from anytoken.atomic import atomic_path
from anytoken.tasks.data.captioning import build_text_tokenizer
from anytoken.tasks.data.sampling import split_loader
from anytoken.tasks.data.scenes import ScenesConfig, make_scenes
from anytoken.tokenizers.audio_codec import AudioCodecConfig, AudioCodecTokenizer
from anytoken.tokenizers.audio_io import convert_channels, read_audio, resample
from anytoken.tokenizers.base import CONFIG_FILE
from anytoken.tokenizers.space import TokenSpace

TRAIN_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-029", "en-gb-x-rp+f2")
HELDOUT_VOICES = ("en-gb-scotland+f4", "en-us-nyc+m5")  # spoken in the heldout split only
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
TASK_TAGS = ("transcribe", "speak")
EVAL_SPLITS = ("test", "heldout", "alsa")  # the test dataloaders, in order (alsa when installed)


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


def trim_silence(
    wave: torch.Tensor, sample_rate: int, threshold: float = 1e-3, margin: float = 0.05
) -> torch.Tensor:
    """Cut leading and trailing samples below ``threshold`` from ``wave`` ``[C, T]``, keeping ``margin`` s."""
    loud = (wave.abs().amax(0) > threshold).nonzero()
    if len(loud) == 0:
        return wave
    pad = int(margin * sample_rate)
    return wave[:, max(0, int(loud[0]) - pad) : int(loud[-1]) + pad + 1]


def synthesize_all(
    utterances: list[Utterance], sample_rate: int = 16000, workers: int = 4
) -> list[torch.Tensor]:
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


def codec_digest(codec: AudioCodecTokenizer) -> str:
    """A hash of the codec's config and weights: what cached codes are keyed by."""
    h = hashlib.sha1(json.dumps(codec.config(), sort_keys=True).encode())
    for name, tensor in sorted(codec.state_dict().items()):
        if not name.startswith("discriminator."):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_waves(
    codec: AudioCodecTokenizer, waves: list[torch.Tensor], batch_size: int = 16
) -> list[torch.Tensor]:
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


def train_codec(
    spec: dict[str, Any],
    steps: int,
    directory: str | Path,
    waves: list[torch.Tensor],
    batch_size: int = 16,
    seed: int = 0,
) -> None:
    """Train a codec from ``spec`` for ``steps`` on 0.5-s crops of ``waves``; export it to ``directory``."""
    from anytoken.tasks.data.audio_clips import Clips
    from anytoken.tasks.tokenizer_training import ExportTokenizer, TokenizerTrainingModule

    rank_zero_info(f"no codec at {directory}: training one for {steps} steps first")
    # a fresh context: LightningCLI's hyperparameters of the DataModule being built must not leak into
    # this module's save_hyperparameters()
    module = contextvars.Context().run(
        TokenizerTrainingModule,
        spec,
        lr=2e-3,
        betas=(0.8, 0.99),
        warmup_steps=min(50, steps // 10),
        num_samples=0,
    )
    codec = module.tokenizer
    clips = Clips(waves, [], steps * batch_size, 0.5, codec.sample_rate, codec.channels, seed)
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        devices=1,
        default_root_dir=str(Path(directory).parent),
        callbacks=[ExportTokenizer(str(directory))],
    )
    trainer.fit(module, train_dataloaders=DataLoader(clips, batch_size=batch_size, drop_last=True))


def codec_sample_rate(path: str | None, spec: dict[str, Any]) -> int:
    """The sample rate of the codec saved at ``path``, else of the one ``spec`` builds."""
    saved = Path(path) / CONFIG_FILE if path is not None else None
    config = (
        json.loads(saved.read_text())["config"]
        if saved is not None and saved.is_file()
        else spec.get("config", {})
    )
    return AudioCodecConfig(**config).sample_rate


def load_codec(
    path: str | None,
    spec: dict[str, Any] | None,
    num_steps: int,
    num_codebooks: int | None,
    train_utterances: list[Utterance],
    batch_size: int = 16,
    seed: int = 0,
) -> AudioCodecTokenizer:
    """The codec saved at ``path`` (first trained there for ``num_steps`` on ``train_utterances`` when the
    directory is missing and ``num_steps > 0``), or an untrained one from ``spec`` when ``path`` is None;
    in eval mode with ``num_codebooks`` levels.

    Raises:
        ValueError: when ``path`` holds no codec and ``num_steps`` is 0.
    """
    spec = spec or {"tokenizer": "audio_codec", "config": {}}
    if path is not None and not Path(path).is_dir():
        if num_steps <= 0:
            raise ValueError(
                f"no codec at {path}: train one (anytoken fit --config "
                "configs/codec_speech16k.yaml) or set num_codec_steps to train one here first"
            )
        waves = synthesize_all(train_utterances, codec_sample_rate(path, spec))
        train_codec(spec, num_steps, path, waves, batch_size, seed)
    if path is None:
        rank_zero_warn("no codec_path, so an untrained codec makes the audio tokens")
        codec = AudioCodecTokenizer(**spec.get("config", {}))
    else:
        codec = AudioCodecTokenizer.from_pretrained(path)
    return codec.with_codebooks(num_codebooks).eval()


def encode_utterances(
    codec: AudioCodecTokenizer, utterances: list[Utterance], cache_dir: str | None, name: str
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


class SpeechDataModule(L.LightningDataModule):
    """Spoken scenes captions (and ALSA's recorded words) as codec codes with transcripts.

    Args:
        codec_path: a saved audio codec (``save_pretrained`` directory); when missing, trained there first
            if ``num_codec_steps > 0``; None: an untrained codec from ``codec`` (smoke tests).
        codec: the codec spec ``{"tokenizer": "audio_codec", "config": {...}}`` used to train or build one.
        num_codec_steps: training steps for a codec that ``codec_path`` does not hold yet (0: fail instead).
        num_codebooks: codec levels in the token stream (None: the codec's own ``num_codebooks``).
        scenes: which scenes are spoken (their captions are the transcripts).
        num_train: training utterances; ``num_val``/``num_test``/``num_heldout`` likewise.
        text_tokenizer: ``"bpe"`` (trained on the training transcripts) or ``"clip_bpe"``.
        bpe_vocab_size: size of the trained BPE.
        tokenizer_path: load a saved text tokenizer instead.
        batch_size: training batch size; evaluation uses twice this.
        num_workers: DataLoader worker processes.
        seed: voices and shuffling seed.
        cache_dir: where encoded utterances are cached (None: no cache).
    """

    def __init__(
        self,
        codec_path: str | None = None,
        codec: dict[str, Any] | None = None,
        num_codec_steps: int = 0,
        num_codebooks: int | None = None,
        scenes: ScenesConfig | None = None,
        num_train: int = 1000,
        num_val: int = 64,
        num_test: int = 128,
        num_heldout: int = 128,
        text_tokenizer: Literal["bpe", "clip_bpe"] = "bpe",
        bpe_vocab_size: int = 256,
        tokenizer_path: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if num_train < 1:
            raise ValueError("SpeechDataModule needs num_train > 0")
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
        utterances = {s: spoken_scenes(s, n, scenes, seed) for s, n in sizes.items() if n > 0}
        self.codec = load_codec(
            codec_path, codec, num_codec_steps, num_codebooks, utterances["train"], batch_size, seed
        )
        self.splits = {}
        for split, utts in utterances.items():
            codes = encode_utterances(self.codec, utts, cache_dir, split)
            self.splits[split] = [
                {"text": u.text, "codes": c, "id": f"{split}/{i}"}
                for i, (u, c) in enumerate(zip(utts, codes))
            ]
        words = alsa_words()
        if words:
            recorded = [read_audio(p, self.codec.sample_rate, 1)[0] for p, _ in words]
            codes = encode_waves(self.codec, recorded)
            self.splits["alsa"] = [
                {"text": t, "codes": c, "id": f"alsa/{p.stem}"} for (p, t), c in zip(words, codes)
            ]
        corpus = [item["text"] for item in self.splits["train"]]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.space = TokenSpace(
            {"text": self.tokenizer.vocab_size, "audio": self.codec.vocab_size}, tasks=TASK_TAGS
        )

    @property
    def vocab(self) -> dict[str, Any]:
        """The TokenSpace layout and tokenizer specs the model is built with (linked by the CLI)."""
        return {
            "token_space": self.space.to_dict(),
            "tokenizers": {"text": self.tokenizer.spec(), "audio": self.codec.spec()},
        }

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"texts", "text_ids", "codes" (list of [K, T']), "ids"}``."""
        texts = [item["text"] for item in items]
        return {
            "texts": texts,
            "text_ids": self.tokenizer.encode_batch(texts),
            "codes": [item["codes"] for item in items],
            "ids": [item["id"] for item in items],
        }

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        return split_loader(
            self.splits[split], self.batch_size, self.collate, train, self.seed, self.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val" if "val" in self.splits else "train")

    def test_dataloader(self) -> list[DataLoader]:
        """Test (seen voices), heldout (unseen voices and colour-shape pairs), alsa (recorded speech)."""
        return [self._loader(s) for s in EVAL_SPLITS if s in self.splits]

    @property
    def test_names(self) -> list[str]:
        return [s for s in EVAL_SPLITS if s in self.splits]

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test" if "test" in self.splits else "train")
