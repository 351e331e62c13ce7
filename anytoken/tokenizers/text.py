"""Text tokenizers: a byte-level BPE trained with HuggingFace ``tokenizers``, and open_clip's CLIP BPE.

Both are lossless on the text they accept: ``decode(encode(s)) == s`` for the BPE (byte-level, so any
Unicode string), and up to CLIP's own normalisation (lower case, collapsed whitespace) for ``clip_bpe``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from anytoken.tokenizers.base import Tokenizer, register_tokenizer

MEMO_SIZE = 1 << 16  # strings whose BPE ids a tokenizer keeps (full of 60-character questions: 42 MB)


class TextTokenizer(Tokenizer):
    """Shared validation and batching for text tokenizers; subclasses map ``str <-> list[int]``."""

    modality = "text"

    def encode(self, x: str) -> torch.Tensor:
        """Encode one string into a 1-D long tensor of local ids."""
        if not isinstance(x, str):
            raise ValueError(f"{self.name}: expected a str, got {type(x).__name__}")
        return torch.tensor(self._encode(x), dtype=torch.long)

    def encode_batch(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Encode several strings (lengths differ, so a list of 1-D tensors)."""
        return [self.encode(t) for t in texts]

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Decode a 1-D sequence of local ids into a string."""
        ids = self.check_ids(ids)
        if ids.dim() != 1:
            raise ValueError(
                f"{self.name}: decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}"
            )
        return self._decode(ids.tolist())

    def reconstruction_error(self, x: str) -> float:
        """Character error rate-like flag: 0.0 when the round trip reproduces ``x``, else 1.0."""
        return float(self.decode(self.encode(x)) != x)

    def pieces(self) -> list[str]:
        """The vocabulary entry of every id, in id order (e.g. ``"Ġred"``): two tokenizers of the same
        kind share an entry exactly when it stands for the same text, so a model's token embeddings can
        move to another tokenizer's ids (``anytoken.models.growth``)."""
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError


@register_tokenizer
class BPETokenizer(TextTokenizer):
    """Byte-level BPE (GPT-2 style) trained on a corpus with HuggingFace ``tokenizers``.

    Args:
        tokenizer_json: the serialised HuggingFace tokenizer (``Tokenizer.to_str()``); build one with
            ``BPETokenizer.train``.
    """

    name = "bpe"

    def __init__(self, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._hf = HFTokenizer.from_str(tokenizer_json)
        except Exception as err:  # the Rust side raises a bare Exception
            raise ValueError(f"bpe: not a valid HuggingFace tokenizer JSON ({err})") from None
        self._json = tokenizer_json
        self._known: dict[str, list[int]] = {}  # memo: training data repeats its questions and captions

    @classmethod
    def train(cls, corpus: Iterable[str], vocab_size: int = 512, min_frequency: int = 2) -> BPETokenizer:
        """Train a byte-level BPE on an iterable of strings (fast: a few thousand captions take ~1 s)."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ValueError(f"bpe: vocab_size must be > 256 (the byte alphabet), got {vocab_size}")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, initial_alphabet=alphabet, show_progress=False
        )
        hf.train_from_iterator(corpus, trainer=trainer)
        return cls(hf.to_str())

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size()

    def config(self) -> dict[str, Any]:
        return {"tokenizer_json": self._json}

    def pieces(self) -> list[str]:
        return [self._hf.id_to_token(i) for i in range(self.vocab_size)]

    def _encode(self, text: str) -> list[int]:
        ids = self._known.get(text)
        if ids is None:
            ids = self._hf.encode(text, add_special_tokens=False).ids
            if len(self._known) < MEMO_SIZE:
                self._known[text] = ids
        return ids

    def _decode(self, ids: list[int]) -> str:
        return self._hf.decode(ids, skip_special_tokens=False)


@register_tokenizer
class CLIPBPETokenizer(TextTokenizer):
    """The CLIP BPE (49,408 ids) whose vocabulary ships inside ``open_clip``: nothing is downloaded.

    CLIP lower-cases and collapses whitespace, so the round trip is exact up to that normalisation.
    Its own start/end-of-text ids are not used: the TokenSpace supplies begin/end markers.
    """

    name = "clip_bpe"

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self._clip = SimpleTokenizer()

    @property
    def vocab_size(self) -> int:
        return len(self._clip.encoder)

    def pieces(self) -> list[str]:
        return [self._clip.decoder[i] for i in range(self.vocab_size)]

    def _encode(self, text: str) -> list[int]:
        return self._clip.encode(text)

    def _decode(self, ids: list[int]) -> str:
        return self._clip.decode(ids).strip()
