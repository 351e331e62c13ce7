"""The audio codec tokenizer (SoundStream/EnCodec/DAC family, see docs/audio.md): a weight-normalised conv
encoder, residual VQ with quantizer dropout (``num_codebooks`` picks the bitrate), a conv decoder.

``encode`` maps waves ``[B, C, T]`` to codes ``[B, K, T']``, ``T' = ceil(T / hop_length)``; ``decode`` maps
them back to ``[B, C, T' * hop_length]``. In a TokenSpace level ``k``'s code ``c`` is local id
``k * cardinality + c``, frame by frame, and ``grammar()`` cycles one step per level, so constrained
decoding yields whole frames. Every layer sees a bounded window, so long signals are coded in chunks of
``chunk_seconds`` with the receptive field as context on both sides (equal up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from anytoken.tokenizers.audio_codes import AudioCodes
from anytoken.tokenizers.audio_io import chunked
from anytoken.tokenizers.audio_losses import DEFAULT_SCALES, MultiScaleMel, MultiScaleSTFTDiscriminator
from anytoken.tokenizers.base import Tokenizer, register_tokenizer
from anytoken.tokenizers.quantizers import ResidualVectorQuantizer, TokenizerOutput, TrainableTokenizer


@dataclass
class AudioCodecConfig:
    """Signal, architecture, quantizer and training losses of the audio codec."""

    sample_rate: int = 16000  # Hz of the waves it codes (16000 or 24000 typical; inputs are resampled)
    channels: int = 1  # audio channels it codes (inputs are converted: mean to mono)
    strides: list[int] = field(default_factory=lambda: [4, 4, 4, 5])  # hop = product (320: 50 Hz at 16 kHz)
    encoder_channels: int = 16  # encoder width at full rate, doubled at every stride
    decoder_channels: int = 256  # decoder width at frame rate, halved at every stride
    dilations: list[int] = field(default_factory=lambda: [1, 3])  # residual units per resolution
    activation: Literal["snake", "elu"] = "snake"  # Snake (DAC; better pitch) or ELU (EnCodec; 2x cheaper)
    latent_dim: int = 32  # size of the quantized vectors
    codebook_size: int = 1024  # codes per level (the cardinality)
    num_quantizers: int = 12  # residual VQ levels in the model (12 x 10 bits x 50 Hz = 6 kbps)
    num_codebooks: int | None = None  # levels encode emits (None: all): picks the bitrate
    quantizer_dropout: float = 0.5  # chance a training batch uses only the first n ~ U{1..levels}
    vq_ema: bool = True  # EMA codebooks (else learned through a codebook loss)
    vq_decay: float = 0.99  # EMA decay of the codebooks
    latent_norm: bool = True  # batch-normalise latents before the VQ (running statistics at inference)
    vq_dead_threshold: float = 0.1  # restart codes picked fewer times per batch (EMA); 0: never
    commitment_weight: float = 1.0  # weight of the commitment loss (per level)
    mel_weight: float = 1.0  # multi-scale log-mel L1 weight
    stft_weight: float = 0.0  # multi-resolution STFT loss weight
    l1_weight: float = 0.0  # time-domain L1 weight
    loss_scales: list[int] = field(default_factory=lambda: list(DEFAULT_SCALES))  # STFT windows of the losses
    disc_weight: float = 0.0  # adversarial weight; 0 disables the multi-scale STFT discriminator
    feature_weight: float = 2.0  # feature-matching weight (with the discriminator)
    disc_start: int = 0  # training step at which the adversarial losses start
    disc_channels: int = 32  # discriminator width
    chunk_seconds: float = 10.0  # encode/decode longer signals in chunks of this length

    def __post_init__(self) -> None:
        if self.sample_rate < 1000 or self.channels < 1:
            raise ValueError(
                f"need sample_rate >= 1000 and channels >= 1, got {self.sample_rate}, {self.channels}"
            )
        if not self.strides or min(self.strides) < 1 or not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"strides and dilations need positive entries: {self.strides}, {self.dilations}")
        if self.encoder_channels < 1 or self.decoder_channels < 2 ** len(self.strides) or self.latent_dim < 1:
            raise ValueError(
                f"decoder_channels must allow halving {len(self.strides)} times and widths be >= 1: "
                f"{self.encoder_channels}, {self.decoder_channels}, {self.latent_dim}"
            )
        if self.num_codebooks is not None and not 1 <= self.num_codebooks <= self.num_quantizers:
            raise ValueError(
                f"num_codebooks must be in [1, num_quantizers={self.num_quantizers}], "
                f"got {self.num_codebooks}"
            )
        weights = (self.mel_weight, self.stft_weight, self.l1_weight, self.disc_weight, self.feature_weight)
        if min(weights) < 0 or self.mel_weight + self.stft_weight + self.l1_weight == 0:
            raise ValueError(f"loss weights must be >= 0 with some reconstruction loss, got {weights}")
        if self.activation not in ("snake", "elu"):
            raise ValueError(f"activation must be 'snake' or 'elu', got {self.activation!r}")
        if self.chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {self.chunk_seconds}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)


class Snake(nn.Module):
    """Snake activation ``x + sin^2(alpha x) / alpha`` with a learned ``alpha`` per channel (DAC)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha * x).sin().pow(2) / (self.alpha + 1e-9)


class Conv(nn.Module):
    """Weight-normalised conv that keeps ``T / stride`` frames (zero padding split over both sides)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation))
        total = (kernel - 1) * dilation + 1 - stride
        self.pad = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))  # (B, c_out, T / stride)


class UpConv(nn.Module):
    """Weight-normalised transposed conv (kernel ``2 * stride``) giving exactly ``T * stride`` samples."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride))
        self.trim = (stride // 2, stride - stride // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (B, c_out, (T + 1) * stride)
        return y[..., self.trim[0] : y.shape[-1] - self.trim[1]]


def _act(kind: str, channels: int) -> nn.Module:
    return Snake(channels) if kind == "snake" else nn.ELU()


class ResidualUnit(nn.Module):
    """Activation, dilated conv k7, activation, conv k1, plus the input."""

    def __init__(self, channels: int, dilation: int, act: str = "snake") -> None:
        super().__init__()
        self.body = nn.Sequential(
            _act(act, channels),
            Conv(channels, channels, 7, dilation=dilation),
            _act(act, channels),
            Conv(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _encoder(c: AudioCodecConfig) -> nn.Sequential:
    """Waves ``[B, C, T]`` -> latents ``[B, latent_dim, T / hop]``. Residual units only after each strided
    conv: the encoder runs on every training step of the models that consume its tokens."""
    width = c.encoder_channels
    layers: list[nn.Module] = [Conv(c.channels, width, 7)]
    for stride in c.strides:
        layers += [_act(c.activation, width), Conv(width, 2 * width, 2 * stride, stride=stride)]
        width *= 2
        layers += [ResidualUnit(width, d, c.activation) for d in c.dilations]
    layers += [_act(c.activation, width), Conv(width, c.latent_dim, 3)]
    if c.latent_norm:  # per-frame affine at inference, so chunking still holds
        layers.append(nn.BatchNorm1d(c.latent_dim))
    return nn.Sequential(*layers)


def _decoder(c: AudioCodecConfig) -> nn.Sequential:
    """Latents ``[B, latent_dim, T']`` -> waves ``[B, C, T' * hop]`` in ``(-1, 1)``; the mirror image of the
    encoder (residual units before each transposed conv)."""
    width = c.decoder_channels
    layers: list[nn.Module] = [Conv(c.latent_dim, width, 7)]
    for stride in reversed(c.strides):
        layers += [ResidualUnit(width, d, c.activation) for d in c.dilations]
        layers += [_act(c.activation, width), UpConv(width, width // 2, stride)]
        width //= 2
    layers += [_act(c.activation, width), Conv(width, c.channels, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def _receptive_field(module: nn.Module, reverse: bool = False) -> int:
    """Samples one output depends on (encoder), or input frames x hop an output sample needs (decoder)."""
    convs = [m for m in module.modules() if isinstance(m, (Conv, UpConv))]
    rf, jump = 1, 1
    for m in reversed(convs) if reverse else convs:
        if isinstance(m, UpConv):  # walking back from the output: an up-conv output needs 2 inputs
            jump *= m.conv.stride[0]
            rf += jump
        else:
            k, d, s = m.conv.kernel_size[0], m.conv.dilation[0], m.conv.stride[0]
            rf += (k - 1) * d * jump
            jump *= s
    return rf


@register_tokenizer
class AudioCodecTokenizer(AudioCodes, TrainableTokenizer, Tokenizer):
    """Waves <-> residual-VQ codes (an ``AudioCodes``). Keyword arguments: ``AudioCodecConfig``'s fields."""

    name = "audio_codec"
    modality = "audio"
    sample_suffix = ".wav"  # training sample files (tasks.tokenizer_training)
    sample_range = (-1.0, 1.0)
    training_only = {"disc_weight": 0.0}  # the discriminator is a training aid

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.cfg = AudioCodecConfig(**config)
        c = self.cfg
        self.sample_rate, self.channels = c.sample_rate, c.channels
        self.hop_length = c.hop_length  # samples per frame
        self.encoder, self.decoder = _encoder(c), _decoder(c)
        self.quantizer = ResidualVectorQuantizer(
            c.latent_dim, c.codebook_size, c.num_quantizers, c.quantizer_dropout, **self._vq_options()
        )
        self.mel = MultiScaleMel(c.sample_rate, c.loss_scales)
        self.discriminator = (
            MultiScaleSTFTDiscriminator(c.channels, channels=c.disc_channels) if c.disc_weight > 0 else None
        )
        self.encoder_context = math.ceil(_receptive_field(self.encoder) / self.hop_length) + 1  # frames
        self.decoder_context = math.ceil(_receptive_field(self.decoder, reverse=True) / self.hop_length) + 1
        self._chunk = max(1, int(c.chunk_seconds * self.frame_rate))  # frames coded at a time

    @property
    def num_codebooks(self) -> int:
        """Levels ``encode`` emits (K)."""
        return self.cfg.num_codebooks or self.cfg.num_quantizers

    @property
    def cardinality(self) -> int:
        """Codes per level (C)."""
        return self.cfg.codebook_size

    def with_codebooks(self, num_codebooks: int | None) -> AudioCodecTokenizer:
        """Use the first ``num_codebooks`` levels (a lower bitrate of the same weights); returns self."""
        self.cfg.num_codebooks = num_codebooks
        self.cfg.__post_init__()
        return self

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """Waves (see ``prepare``) -> codes ``[B, K, ceil(T / hop)]`` long in ``[0, cardinality)``."""
        x = self.prepare(wave, sample_rate).to(self._device)
        frames = math.ceil(x.shape[-1] / self.hop_length)
        x = F.pad(x, (0, frames * self.hop_length - x.shape[-1]))  # (B, C, T' * hop)
        training = self.encoder.training
        self.encoder.eval()  # running latent statistics, whatever the module's mode
        try:
            z = chunked(self.encoder, x, frames, self._chunk, self.encoder_context, self.hop_length, 1)
        finally:
            self.encoder.train(training)
        return self.quantize(z.transpose(1, 2))  # (B, K, T')

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, T', D]`` -> codes ``[B, K, T']`` (nearest codes level by level; never trains)."""
        residual, codes = z.float(), []
        for vq in self.quantizer.levels[: self.num_codebooks]:
            idx = vq.nearest(residual.reshape(-1, residual.shape[-1])).view(residual.shape[:-1])  # (B, T')
            residual = residual - vq.lookup(idx)
            codes.append(idx)
        return torch.stack(codes, dim=1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, K, T']`` or ``[K, T']``, or flat local ids ``[T' * K]`` -> waves ``[B, C, T' hop]``."""
        codes = self.check_codes(codes)
        z = self.quantizer.lookup(codes.to(self._device).transpose(1, 2)).transpose(1, 2)  # (B, D, T')
        return chunked(
            self.decoder, z, codes.shape[-1], self._chunk, self.decoder_context, 1, self.hop_length
        )

    def reconstruction_error(self, x: Any) -> float:
        """Negative SI-SNR (dB) of ``decode(encode(x))`` against ``x``: lower is better, like an error."""
        x = self.prepare(x).to(self._device)
        recon = self.decode(self.encode(x))[..., : x.shape[-1]]
        return -float(self.reconstruction_metrics(x, recon)["si_snr"])

    def forward(self, wave: torch.Tensor, num_levels: int | None = None) -> tuple[torch.Tensor, Any]:
        """Waves ``[B, C, T]`` (T a multiple of ``hop_length``) -> (reconstruction, ``QuantizerOutput``)."""
        z = self.encoder(wave).transpose(1, 2)  # (B, T', D)
        q = self.quantizer(z, num_levels)
        return self.decoder(q.quantized.transpose(1, 2)), q

    def loss(self, wave: torch.Tensor, step: int = 0) -> TokenizerOutput:
        """Mel (+ STFT, + L1) reconstruction + commitment (+ adversarial and feature matching) losses."""
        c = self.cfg
        if wave.dim() != 3 or wave.shape[1] != c.channels or wave.shape[-1] == 0:
            raise ValueError(f"audio_codec.loss needs waves [B, {c.channels}, T], got {tuple(wave.shape)}")
        recon, q = self(F.pad(wave, (0, -wave.shape[-1] % self.hop_length)))  # whole frames in
        recon = recon[..., : wave.shape[-1]]
        terms = {"mel": (c.mel_weight, self.mel.distance(recon, wave))}
        if c.stft_weight > 0:
            terms["stft"] = (c.stft_weight, self.mel.stft_distance(recon, wave))
        if c.l1_weight > 0:
            terms["l1"] = (c.l1_weight, (recon - wave).abs().mean())
        weights = {"adversarial": c.disc_weight, "feature_matching": c.feature_weight}
        terms |= self._adversarial(wave, recon, step, weights)
        return self._output(terms, q, recon, q.counts[: q.indices.shape[-1]])  # usage of the levels used

    def reconstruction_metrics(
        self, wave: torch.Tensor, reconstruction: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """SI-SNR (dB, mean over signals) and multi-scale mel distance of reconstructions ``[B, C, T]``."""
        from torchmetrics.functional.audio import scale_invariant_signal_noise_ratio

        recon = reconstruction.detach().float()
        return {
            "si_snr": scale_invariant_signal_noise_ratio(recon, wave.float()).mean(),
            "mel_distance": self.mel.distance(recon, wave.float()),
        }
