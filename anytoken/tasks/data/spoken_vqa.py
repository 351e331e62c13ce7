"""Spoken questions about images: VQA whose questions also arrive as speech (audio codec codes).

Each question is spoken by espeak-ng in a voice drawn from ``(seed, split, question)`` (the held-out split
uses voices no other split hears) and encoded by the audio codec. A scene question is one of about 80
texts, so each ``(text, voice)`` is synthesised and encoded only once (and cached on disk).
"""

from __future__ import annotations

import random
from typing import Any

from anytoken.tasks.data.synthetic.spoken import (
    HELDOUT_VOICES,
    TRAIN_VOICES,
    Utterance,
    encode_utterances,
    load_codec,
)
from anytoken.tasks.data.vqa import VQADataModule, question_records


class SpokenVQADataModule(VQADataModule):
    """``VQADataModule`` with every question also spoken: batches gain ``question_codes``.

    Args:
        codec_path, codec, num_codebooks, cache_dir: as ``SpeechDataModule``'s.
        *args, **kwargs: those of ``VQADataModule``.
    """

    def __init__(
        self,
        *args: Any,
        codec_path: str | None = None,
        codec: dict[str, Any] | None = None,
        num_codebooks: int | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.codec = load_codec(codec_path, codec, num_codebooks)
        spoken = {split: self._utterances(split) for split in self.splits}
        distinct = {split: sorted(set(utts.values()), key=repr) for split, utts in spoken.items()}
        codes = {}
        for split, utts in distinct.items():
            codes |= dict(zip(utts, encode_utterances(self.codec, utts, cache_dir, f"vqa_{split}")))
        self._codes = {key: codes[utt] for utts in spoken.values() for key, utt in utts.items()}
        self.set_vocab({"text": self.tokenizer, "image": None, "audio": self.codec}, answers=self.answers)

    def _utterances(self, split: str) -> dict[tuple[str, str], Utterance]:
        """``(image_id, question) -> Utterance`` for the questions of ``split``."""
        voices = HELDOUT_VOICES if split == "heldout" else TRAIN_VOICES
        out = {}
        for record in question_records(self.splits[split].dataset):
            text = record["question"].strip()
            key = (record["image_id"], text)
            voice = random.Random(f"anytoken-spoken-vqa/{self.seed}/{split}/{key}").choice(voices)
            out[key] = Utterance(text, voice)
        return out

    def collate(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """``VQADataModule.collate`` plus ``question_codes``: ``[K, T']`` codes per question."""
        batch = super().collate(groups)
        keys = zip(batch["image_ids"], batch["questions"])
        batch["question_codes"] = [self._codes[(image, q.strip())] for image, q in keys]
        return batch
