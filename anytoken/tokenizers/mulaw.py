"""The mu-law tokenizer: one token per sample, 8 bits by default (WaveNet's input coding), the baseline
of the neural codec: nothing to train, near-transparent for speech (35-40 dB SI-SNR at 8 bits), but
``bits * sample_rate * channels`` bits/s (128 kbps at 16 kHz mono) and a token per sample.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anytoken.tokenizers.audio_io import AudioMedia
from anytoken.tokenizers.base import Tokenizer, register_tokenizer


@register_tokenizer
class MuLawTokenizer(AudioMedia, Tokenizer):
    """Waves at ``sample_rate`` Hz with ``channels`` channels (others are converted by ``audio_io``'s policy)
    <-> mu-law companded sample ids in ``[0, 2 ** bits)`` (``mu = 2 ** bits - 1``)."""

    name = "mulaw"
    modality = "audio"

    def __init__(self, sample_rate: int = 16000, channels: int = 1, bits: int = 8) -> None:
        if sample_rate < 1000 or channels < 1 or not 2 <= bits <= 16:
            raise ValueError(
                f"mulaw needs sample_rate >= 1000, channels >= 1, 2 <= bits <= 16: "
                f"{sample_rate}, {channels}, {bits}"
            )
        self.sample_rate, self.channels, self.bits = sample_rate, channels, bits

    @property
    def vocab_size(self) -> int:
        return 2**self.bits

    @property
    def num_codebooks(self) -> int:
        """Parallel streams: one per channel (codec-style bookkeeping for bitrates and tokens per second)."""
        return self.channels

    @property
    def cardinality(self) -> int:
        return self.vocab_size

    @property
    def frame_rate(self) -> float:
        """Tokens per second per channel: one per sample."""
        return float(self.sample_rate)

    @property
    def bitrate(self) -> float:
        """Bits per second."""
        return self.sample_rate * self.channels * math.log2(self.vocab_size)

    def config(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "channels": self.channels, "bits": self.bits}

    def encode(self, wave: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Waves (``[B, C, T]``, ``[C, T]`` or ``[T]`` in ``[-1, 1]``) -> ids ``[B, channels, T']`` long."""
        from torchaudio.functional import mu_law_encoding

        x = self.prepare(wave, sample_rate)
        return mu_law_encoding(x.clamp(-1, 1), self.vocab_size).long()

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, C, T]``, ``[C, T]`` or mono ``[T]`` -> waves ``[B, C, T]`` in ``[-1, 1]``."""
        from torchaudio.functional import mu_law_decoding

        ids = self.check_ids(ids)
        ids = ids.reshape(1, 1, -1) if ids.dim() == 1 else ids[None] if ids.dim() == 2 else ids
        if ids.dim() != 3 or ids.shape[1] != self.channels or ids.shape[-1] == 0 or ids.shape[0] == 0:
            raise ValueError(
                f"mulaw: ids must be [B, {self.channels}, T], [{self.channels}, T] or (mono) [T] "
                f"with T >= 1, got shape {tuple(ids.shape)}"
            )
        return mu_law_decoding(ids, self.vocab_size).float()

    def reconstruction_error(self, x: Any) -> float:
        """Negative SI-SNR (dB) of ``decode(encode(x))`` against ``x`` (lower is better)."""
        from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

        x = self.prepare(x)
        return -float(scale_invariant_signal_noise_ratio(self.decode(self.encode(x)), x).mean())
