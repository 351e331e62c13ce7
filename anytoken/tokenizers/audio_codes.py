"""``AudioCodes``: the contract of every multi-codebook audio tokenizer (audiocraft's ``CompressionModel``),
anytoken's own codec and the adapted EnCodec, DAC and Mimi alike.

``encode`` maps waves to codes ``[B, K, T']`` of ``K = num_codebooks`` residual levels, ``cardinality`` codes
each, ``frame_rate`` frames a second; in a TokenSpace level ``k``'s code ``c`` is local id ``k * C + c``,
frame by frame, and ``grammar()`` cycles one step per level, so constrained decoding yields whole frames.
The speech tasks take any ``AudioCodes``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from anytoken.tokenizers.audio_io import AudioMedia
from anytoken.tokenizers.base import SegmentGrammar


class AudioCodes(AudioMedia):
    """Codes ``[B, K, T']`` <-> flat local ids, grammar and bitrate of a multi-codebook audio tokenizer, which
    defines ``num_codebooks``, ``cardinality``, ``sample_rate``, ``channels`` and ``hop_length``."""

    name: ClassVar[str] = "audio codec"  # what error messages call the family (each tokenizer has its own)
    num_codebooks: int  # levels ``encode`` emits (K)
    cardinality: int  # codes per level (C)
    hop_length: int  # samples per frame

    def with_codebooks(self, num_codebooks: int | None) -> AudioCodes:
        """Emit the first ``num_codebooks`` levels (a lower bitrate of the same weights; None: the
        tokenizer's default); returns self."""
        raise NotImplementedError

    @property
    def frame_rate(self) -> float:
        """Frames (code vectors of K levels) per second."""
        return self.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second at ``num_codebooks`` levels: ``frame_rate * K * log2(C)``."""
        return self.frame_rate * self.num_codebooks * math.log2(self.cardinality)

    @property
    def vocab_size(self) -> int:
        return self.num_codebooks * self.cardinality

    def grammar(self) -> SegmentGrammar:
        """Whole frames: level 0's sub-range, then level 1's, ... cycling; at least one frame."""
        C = self.cardinality
        steps = tuple(((k * C, (k + 1) * C),) for k in range(self.num_codebooks))
        return SegmentGrammar(steps=steps, min_length=self.num_codebooks)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., K, T']`` -> ids ``[..., T' * K]`` frame by frame (level k code c: k * C + c)."""
        offsets = torch.arange(codes.shape[-2], device=codes.device)[:, None] * self.cardinality  # (K, 1)
        return (codes + offsets).transpose(-1, -2).reshape(*codes.shape[:-2], -1)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Flat local ids ``[..., T' * K]`` (as ``grammar()`` generates) -> codes ``[..., K, T']``."""
        ids = self.check_ids(ids)
        K, C = self.num_codebooks, self.cardinality
        if ids.shape[-1] == 0 or ids.shape[-1] % K:
            raise ValueError(f"{self.name}: {ids.shape[-1]} ids are not whole frames of {K} levels")
        frames = ids.reshape(*ids.shape[:-1], -1, K)  # (..., T', K)
        level = frames // C
        if not bool((level == torch.arange(K, device=ids.device)).all()):
            raise ValueError(f"{self.name}: ids must cycle through the {K} levels' ranges (k * {C} + c)")
        return (frames % C).transpose(-1, -2)

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """What ``decode`` takes, codes ``[B, K, T']`` or ``[K, T']`` or flat local ids ``[T' * K]``, as long
        codes ``[B, K, T']``; ``ValueError`` naming the problem (shape, dtype, a code out of range)."""
        codes = torch.as_tensor(codes)
        if codes.dim() == 1:
            codes = self.ids_to_codes(codes)
        codes = codes[None] if codes.dim() == 2 else codes
        K = self.num_codebooks
        if codes.dim() != 3 or codes.shape[1] != K or codes.shape[0] == 0 or codes.shape[2] == 0:
            raise ValueError(
                f"{self.name}: codes must be [B, {K}, T'] or [{K}, T'] with T' >= 1 ({K} codebooks), "
                f"got shape {tuple(codes.shape)}"
            )
        if codes.is_floating_point() or codes.dtype == torch.bool:
            raise ValueError(f"{self.name}: codes must be integers, got dtype {codes.dtype}")
        codes = codes.long()
        if int(codes.min()) < 0 or int(codes.max()) >= self.cardinality:
            raise ValueError(
                f"{self.name}: codes must lie in [0, {self.cardinality}), got "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        return codes
