"""The speech tasks' data: spoken scenes captions (and ALSA's recorded words) as audio codec codes with
their transcripts. It reads a trained codec, so speech takes two commands::

    anytoken fit --config configs/codec_speech16k.yaml   # trains the codec: runs/codec_speech16k/tokenizer
    anytoken fit --config configs/speech_stt.yaml        # codec_path: runs/codec_speech16k/tokenizer
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.tasks.data.base import TaskDataModule, holdout_splits
from anytoken.tasks.data.captioning import build_text_tokenizer
from anytoken.tasks.data.formats.librispeech import LibriSpeechDataset
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import (
    alsa_words,
    encode_utterances,
    encode_waves,
    load_codec,
    spoken_scenes,
)
from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.audio_io import read_audio


def spoken_splits(codec: AudioCodes, sizes: dict[str, int], scenes: ScenesConfig | None, seed: int,
                  cache_dir: str | None, sharded: bool) -> dict[str, list[dict[str, Any]]]:
    """Split -> items ``{"text", "id", "codes"}`` of ``sizes[split]`` spoken scenes captions (``sharded``:
    the training items come without codes, which the token shards hold)."""
    splits = {}
    for split, n in sizes.items():
        if n > 0:
            utterances = spoken_scenes(split, n, scenes, seed)
            items = [{"text": u.text, "id": f"{split}/{i}"} for i, u in enumerate(utterances)]
            if split != "train" or not sharded:
                for item, codes in zip(items, encode_utterances(codec, utterances, cache_dir, split)):
                    item["codes"] = codes
            splits[split] = items
    return splits


class SpeechDataModule(TaskDataModule):
    """Spoken scenes captions (and ALSA's recorded words) as codec codes with transcripts, each utterance
    encoded once (cached on disk, keyed by the codec's config and weights and the utterances).

    Test splits: ``test`` (seen voices), ``heldout`` (unseen voices and colour-shape pairs) and ``alsa``
    (recorded human speech, when alsa-utils is installed).

    Args:
        codec_path: a trained audio codec (the ``save_pretrained`` directory that
            ``anytoken fit --config configs/codec_speech16k.yaml`` writes).
        codec: instead of ``codec_path``, the spec ``{"tokenizer": "audio_codec", "config": {...}}`` of an
            untrained codec (smoke tests).
        num_codebooks: codec levels in the token stream (None: the codec's own ``num_codebooks``).
        scenes: which scenes are spoken (their captions are the transcripts).
        librispeech: a folder in the LibriSpeech layout (``*.flac`` + ``*.trans.txt``) instead of the
            spoken scenes: its last ``num_val`` utterances (by id) validate and test, the others train; each
            batch's audio is read and encoded by the codec as it is loaded (or comes from ``shards``).
        num_train: training utterances; ``num_val``/``num_test``/``num_heldout`` likewise.
        text_tokenizer, bpe_vocab_size, tokenizer_path: as ``CaptioningDataModule``'s (the BPE trains on
            the training transcripts).
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s (seed also draws the voices).
        cache_dir: where encoded utterances are cached (None: no cache).
    """

    TEST_SPLITS = ("test", "heldout", "alsa")
    TASK_TAGS = ("transcribe", "speak")

    def __init__(
        self,
        codec_path: str | None = None,
        codec: dict[str, Any] | None = None,
        num_codebooks: int | None = None,
        scenes: ScenesConfig | None = None,
        librispeech: str | None = None,
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
        shards: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        if num_train < 1:
            raise ValueError("SpeechDataModule needs num_train > 0")
        self.codec = load_codec(codec_path, codec, num_codebooks)
        if librispeech is not None:
            data = LibriSpeechDataset(librispeech)
            self.splits = holdout_splits(data, num_val, f"the LibriSpeech folder {librispeech}")
        else:
            sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
            self.splits = spoken_splits(self.codec, sizes, scenes, seed, cache_dir, shards is not None)
        words = alsa_words()
        if words:
            codes = encode_waves(self.codec, [read_audio(p, self.codec.sample_rate, 1)[0] for p, _ in words])
            self.splits["alsa"] = [{"text": t, "codes": c, "id": f"alsa/{p.stem}"}
                                   for (p, t), c in zip(words, codes)]
        corpus = [item["text"] for item in self.splits["train"]]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.set_vocab({"text": self.tokenizer, "audio": self.codec})

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"texts", "text_ids", "codes" (list of [K, T']), "ids"}`` (items of audio files are
        encoded here)."""
        texts = [item["text"] for item in items]
        return {
            "texts": texts,
            "text_ids": self.tokenizer.encode_batch(texts),
            "codes": [item["codes"] for item in items] if "codes" in items[0] else self.encode_files(items),
            "ids": [item["id"] for item in items],
        }

    def shard_records(self, indices: range) -> list[dict[str, Any]]:
        """One-sample batches of training items ``indices``, their audio files encoded in batches."""
        items = [self.splits["train"][i] for i in indices]
        if items and "codes" not in items[0]:
            items = [item | {"codes": codes} for item, codes in zip(items, self.encode_files(items))]
        return [self.collate([item]) for item in items]

    def encode_files(self, items: list[dict[str, Any]]) -> list[torch.Tensor]:
        """Codes ``[K, T']`` of each item's audio file (read at the codec's rate, mono), encoded now."""
        waves = [read_audio(item["path"], self.codec.sample_rate, 1)[0] for item in items]
        return encode_waves(self.codec, waves)
