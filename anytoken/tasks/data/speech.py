"""The speech tasks' data: spoken scenes captions (and ALSA's recorded words) as audio codec codes with
their transcripts. It reads a trained codec, so speech takes two commands::

    anytoken fit --config configs/codec_speech16k.yaml   # trains the codec: runs/codec_speech16k/tokenizer
    anytoken fit --config configs/speech_stt.yaml        # codec_path: runs/codec_speech16k/tokenizer
"""

from __future__ import annotations

from typing import Any, Literal

from anytoken.tasks.data.base import TaskDataModule
from anytoken.tasks.data.captioning import build_text_tokenizer
from anytoken.tasks.data.synthetic.scenes import ScenesConfig
from anytoken.tasks.data.synthetic.spoken import (
    alsa_words,
    encode_utterances,
    encode_waves,
    load_codec,
    spoken_scenes,
)
from anytoken.tokenizers.audio_io import read_audio


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
        num_train: training utterances; ``num_val``/``num_test``/``num_heldout`` likewise.
        text_tokenizer, bpe_vocab_size, tokenizer_path: as ``CaptioningDataModule``'s (the BPE trains on
            the training transcripts).
        batch_size, num_workers, seed: as ``TaskDataModule``'s (seed also draws the voices).
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
        super().__init__(batch_size, num_workers, seed)
        if num_train < 1:
            raise ValueError("SpeechDataModule needs num_train > 0")
        self.codec = load_codec(codec_path, codec, num_codebooks)
        sizes = {"train": num_train, "val": num_val, "test": num_test, "heldout": num_heldout}
        for split, n in sizes.items():
            if n > 0:
                utterances = spoken_scenes(split, n, scenes, seed)
                codes = encode_utterances(self.codec, utterances, cache_dir, split)
                self.splits[split] = [{"text": u.text, "codes": c, "id": f"{split}/{i}"}
                                      for i, (u, c) in enumerate(zip(utterances, codes))]
        words = alsa_words()
        if words:
            codes = encode_waves(self.codec, [read_audio(p, self.codec.sample_rate, 1)[0] for p, _ in words])
            self.splits["alsa"] = [{"text": t, "codes": c, "id": f"alsa/{p.stem}"}
                                   for (p, t), c in zip(words, codes)]
        corpus = [item["text"] for item in self.splits["train"]]
        self.tokenizer = build_text_tokenizer(text_tokenizer, corpus, bpe_vocab_size, tokenizer_path)
        self.set_vocab({"text": self.tokenizer, "audio": self.codec})

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"texts", "text_ids", "codes" (list of [K, T']), "ids"}``."""
        texts = [item["text"] for item in items]
        return {
            "texts": texts,
            "text_ids": self.tokenizer.encode_batch(texts),
            "codes": [item["codes"] for item in items],
            "ids": [item["id"] for item in items],
        }
