"""What trains the audio codec: multi-scale mel and STFT reconstruction losses and EnCodec's multi-scale
STFT discriminator (Défossez et al., 2022). ``MultiScaleMel.distance`` is also the benchmarks' "multi-scale
mel distance", so training and evaluation measure the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

DEFAULT_SCALES = (256, 512, 1024, 2048)  # STFT window sizes of the multi-scale losses


def _stft(x: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``[N, n_fft // 2 + 1, frames]`` of ``x`` ``[N, T]`` (hop ``n_fft // 4``, centred)."""
    return torch.stft(x.float(), n_fft, n_fft // 4, window=window, center=True, return_complex=True)


class MultiScaleMel(nn.Module):
    """Log-mel spectrograms at several STFT window sizes ``scales`` (hop a quarter of each), and the
    distances built on them."""

    def __init__(self, sample_rate: int, scales: Sequence[int] = DEFAULT_SCALES) -> None:
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        if not scales or min(scales) < 16:
            raise ValueError(f"mel scales must be window sizes >= 16, got {list(scales)}")
        self.sample_rate, self.scales = sample_rate, tuple(int(s) for s in scales)
        for n in self.scales:
            mels = max(8, min(80, n // 8))  # few bands at small windows, where bands would be empty
            fb = melscale_fbanks(n // 2 + 1, 0.0, sample_rate / 2, mels, sample_rate, "slaney", "slaney")
            self.register_buffer(f"fb_{n}", fb, persistent=False)  # (F, mels)
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def log_mels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per scale, log10 mel power ``[N, frames, mels]`` of ``x`` ``[..., T]`` (flattened to ``N``)."""
        flat = x.reshape(-1, x.shape[-1])  # (N, T)
        out = []
        with torch.autocast(x.device.type, enabled=False):
            for n in self.scales:
                power = _stft(flat, n, getattr(self, f"window_{n}")).abs().pow(2)  # (N, F, frames)
                mel = power.transpose(1, 2) @ getattr(self, f"fb_{n}")  # (N, frames, mels)
                out.append(mel.clamp(min=1e-5).log10())
        return out

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean |log10 mel(x) - log10 mel(y)|, averaged over scales."""
        if x.shape != y.shape:
            raise ValueError(f"mel distance needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
        return torch.stack([(a - b).abs().mean() for a, b in zip(self.log_mels(x), self.log_mels(y))]).mean()

    def stft_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Multi-resolution STFT loss (Parallel WaveGAN): spectral convergence + log-magnitude L1."""
        fx, fy = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        total = x.new_zeros((), dtype=torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            for n in self.scales:
                window = getattr(self, f"window_{n}")
                mx, my = _stft(fx, n, window).abs(), _stft(fy, n, window).abs()  # (N, F, frames)
                convergence = (my - mx).norm() / my.norm().clamp(min=1e-7)
                log_l1 = (mx.clamp(min=1e-5).log() - my.clamp(min=1e-5).log()).abs().mean()
                total = total + convergence + log_l1
        return total / len(self.scales)


class STFTDiscriminator(nn.Module):
    """One scale of EnCodec's discriminator: 2-D convs of width ``channels`` over the real and imaginary
    STFT (window ``n_fft``, hop a quarter of it) of signals of ``in_channels`` channels."""

    def __init__(self, in_channels: int, n_fft: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        convs = [nn.Conv2d(2 * in_channels, c, (3, 9), padding=(1, 4))]
        for d in (1, 2, 4):
            convs.append(nn.Conv2d(c, c, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
        convs.append(nn.Conv2d(c, c, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(conv) for conv in convs)
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Signals ``[B, C, T]`` -> (logits ``[B, 1, frames, F']``, feature maps for feature matching)."""
        B, C, T = x.shape
        spec = _stft(x.reshape(B * C, T), self.n_fft, self.window)  # (B*C, F, frames)
        h = torch.view_as_real(spec).permute(0, 3, 2, 1).reshape(B, 2 * C, spec.shape[2], spec.shape[1])
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)  # (B, ch, frames, F')
            feats.append(h)
        return self.out(h), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's multi-scale STFT discriminator: one ``STFTDiscriminator`` per window size."""

    def __init__(
        self, in_channels: int, scales: Sequence[int] = (2048, 1024, 512), channels: int = 32
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(in_channels, n, channels) for n in scales)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """``[(logits, features)]`` per scale for signals ``[B, C, T]``."""
        return [d(x) for d in self.discriminators]

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The hinge adversarial loss and relative feature-matching L1 of ``fake`` ``[B, C, T]``."""
        with torch.no_grad():
            real_out = self(real)
        adversarial, matching = fake.new_zeros(()), fake.new_zeros(())
        for (logits, feats), (_, real_feats) in zip(self(fake), real_out):
            adversarial = adversarial + F.relu(1 - logits).mean()
            for f, r in zip(feats, real_feats):
                matching = matching + (f - r).abs().mean() / r.abs().mean().clamp(min=1e-6)
        n = len(self.discriminators)
        return {"adversarial": adversarial / n, "feature_matching": matching / (n * len(real_out[0][1]))}

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Hinge loss on real signals and (detached) reconstructions."""
        loss = real.new_zeros(())
        for (real_logits, _), (fake_logits, _) in zip(self(real), self(fake.detach())):
            loss = loss + F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        return loss / len(self.discriminators)
