"""Quantizers shared by the image tokenizer and the audio codec (VQ, residual VQ, FSQ), and what both
trainable tokenizers share (``TokenizerOutput``, ``TrainableTokenizer``).

Every quantizer maps ``[..., dim]`` to codes of that shape plus long indices, computes in fp32 even under
autocast, keeps its codebook in persistent buffers and returns a ``QuantizerOutput``; ``lookup`` inverts
the indices. Hand-written rather than vector-quantize-pytorch: in the same image tokenizer both gave the
same reconstruction and usage (``benchmarks/bench_image_tokenizers.py --vqp``), and the library pulls in
five packages for what is ~350 tested lines here (with EMA statistics synchronised across DDP ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from anytoken.tokenizers.base import WEIGHTS_FILE


@dataclass
class QuantizerOutput:
    """What a quantizer's forward returns (training-time outputs never come from ``encode``)."""

    quantized: torch.Tensor  # [..., dim] codes with gradients passed to the input (straight-through/rotation)
    indices: torch.Tensor  # [...] long; residual VQ: [..., levels]
    loss: torch.Tensor  # scalar: weighted commitment (+ codebook) loss; FSQ: its entropy penalty (or 0)
    counts: torch.Tensor  # [num_codebooks, codebook_size] how often each code was picked in this call


@dataclass
class TokenizerOutput:
    """What a trainable tokenizer's ``loss(x)`` returns to the tokenizer-training task."""

    loss: torch.Tensor  # scalar to minimise (reconstruction + quantizer (+ adversarial) terms)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # scalars to log, e.g. "l1", "commit"
    counts: torch.Tensor | None = None  # [num_codebooks, codebook_size] code histogram of the batch
    reconstruction: torch.Tensor | None = None  # decoded media, for metrics and logged samples


Terms = dict[str, tuple[float, torch.Tensor]]  # loss terms: name -> (weight, value)


class TrainableTokenizer(nn.Module):
    """What the image VQ tokenizer and the audio codec share beside ``Tokenizer`` (list it first): the
    config dataclass ``cfg``, export without the training aids, and the loss assembly."""

    name: str
    cfg: Any
    decoder: nn.Module
    discriminator: nn.Module | None  # None when the adversarial loss is off
    training_only: ClassVar[dict[str, Any]]  # config() overrides that switch the training aids off

    def config(self) -> dict[str, Any]:
        """The inference configuration (the training aids are off: their weights are not exported)."""
        return asdict(self.cfg) | self.training_only

    def _save_state(self, directory: Path) -> None:
        from safetensors.torch import save_file

        aids = ("discriminator.", "perceptual.")
        state = {k: v.contiguous() for k, v in self.state_dict().items() if not k.startswith(aids)}
        save_file(state, str(directory / WEIGHTS_FILE))

    @property
    def _device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def _vq_options(self) -> dict[str, Any]:
        """``VectorQuantizer`` options from the config's ``vq_*`` fields and ``commitment_weight``."""
        options = {k.removeprefix("vq_"): v for k, v in asdict(self.cfg).items() if k.startswith("vq_")}
        return options | {"commitment_weight": self.cfg.commitment_weight}

    def discriminator_loss(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """Hinge loss of the discriminator on real ``x`` and detached reconstructions."""
        if self.discriminator is None:
            raise ValueError(f"this {self.name} tokenizer has no discriminator (disc_weight is 0)")
        return self.discriminator.discriminator_loss(x, reconstruction)

    def _adversarial(
        self, x: torch.Tensor, fake: torch.Tensor, step: int, weights: dict[str, float]
    ) -> Terms:
        """(weight, loss) per generator loss of the frozen discriminator, from step ``cfg.disc_start``."""
        if self.discriminator is None or step < self.cfg.disc_start:
            return {}
        self.discriminator.requires_grad_(False)
        losses = self.discriminator.generator_losses(x, fake)  # name -> loss
        self.discriminator.requires_grad_(True)
        return {name: (weights[name], loss) for name, loss in losses.items()}

    @staticmethod
    def _output(
        terms: Terms, q: QuantizerOutput, recon: torch.Tensor, counts: torch.Tensor | None = None
    ) -> TokenizerOutput:
        """The weighted ``terms`` (name: (weight, loss)) plus the quantizer loss, with their metrics and the
        batch usage of ``counts`` (default: all of ``q.counts``)."""
        loss = sum((weight * value for weight, value in terms.values()), q.loss)
        metrics = {name: value.detach() for name, (_, value) in terms.items()}
        usage, perplexity = usage_and_perplexity(q.counts if counts is None else counts)
        metrics |= {"quantizer_loss": q.loss.detach(), "batch_usage": usage, "perplexity": perplexity}
        return TokenizerOutput(loss, metrics, q.counts, recon)


def usage_and_perplexity(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of codes used and perplexity (exp of the code entropy) of a code histogram ``counts``
    ``[num_codebooks, codebook_size]`` (of a batch or a whole set), averaged over codebooks."""
    counts = counts.float()
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1)  # (C, K)
    return (counts > 0).float().mean(), entropy(probs).exp().mean()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) ``[...]`` of distributions ``[..., K]``."""
    return -(probs * probs.clamp(min=1e-12).log()).sum(-1)


def entropy_penalty(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the rows of soft assignments ``probs`` ``[N, K]`` minus the entropy of their mean
    (MAGVIT-v2): low when every vector is confidently assigned and the batch uses every code equally."""
    return entropy(probs).mean() - entropy(probs.mean(0))


def _all_reduce(*tensors: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


def _broadcast(t: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(t, src=0)


def rotate_to(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rotation trick (Fifty et al., 2024): codes ``q`` ``[N, D]`` as values, with gradients reaching the
    encoder outputs ``x`` ``[N, D]`` through the rotation and rescaling that maps ``x`` onto ``q`` (treated
    as constants), instead of straight through."""
    x_norm = x.norm(dim=-1, keepdim=True).clamp(min=1e-6)  # (N, 1)
    q_norm = q.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    u, v = (x / x_norm).detach(), (q / q_norm).detach()
    w = F.normalize(u + v, dim=-1).detach()  # (N, D)
    rotated = x - 2 * (x * w).sum(-1, keepdim=True) * w + 2 * (x * u).sum(-1, keepdim=True) * v
    return rotated * (q_norm / x_norm).detach()


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantization with the techniques that keep a codebook alive.

    Args:
        dim: vector size (the code dimension; project before and after in the model if it differs).
        codebook_size: number of codes K.
        ema: codes are EMAs of their assigned vectors (else learned through a codebook loss).
        decay: EMA decay of code statistics (also of the usage counts that detect dead codes).
        normalize: l2-normalise vectors and codes (cosine similarity) before matching.
        init: ``"kmeans"`` (a few Lloyd iterations on the first training batch), ``"data"`` (random
            vectors of that batch) or ``"random"`` (Gaussian; no data initialisation).
        kmeans_iters: Lloyd iterations of the k-means initialisation.
        dead_threshold: restart codes whose EMA count per batch falls below this (0 disables restarts).
        commitment_weight: weight of ``||x - sg(q)||^2``.
        gradient: ``"ste"`` (straight-through) or ``"rotation"`` (the rotation trick).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        *,
        ema: bool = True,
        decay: float = 0.99,
        normalize: bool = False,
        init: Literal["kmeans", "data", "random"] = "kmeans",
        kmeans_iters: int = 10,
        dead_threshold: float = 1.0,
        commitment_weight: float = 0.25,
        gradient: Literal["ste", "rotation"] = "ste",
    ) -> None:
        super().__init__()
        if dim < 1 or codebook_size < 2:
            raise ValueError(
                f"VectorQuantizer needs dim >= 1 and codebook_size >= 2, got {dim}, {codebook_size}"
            )
        if init not in ("kmeans", "data", "random") or gradient not in ("ste", "rotation"):
            raise ValueError(
                f"init must be kmeans/data/random and gradient ste/rotation, got {init!r}, {gradient!r}"
            )
        if not 0 < decay < 1 or dead_threshold < 0 or commitment_weight < 0:
            raise ValueError(
                f"need 0 < decay < 1, dead_threshold >= 0, commitment_weight >= 0: {decay}, "
                f"{dead_threshold}, {commitment_weight}"
            )
        self.dim, self.codebook_size = dim, codebook_size
        self.ema, self.decay, self.normalize, self.init = ema, decay, normalize, init
        self.kmeans_iters, self.dead_threshold = kmeans_iters, dead_threshold
        self.commitment_weight, self.gradient = commitment_weight, gradient
        embed = torch.randn(codebook_size, dim)
        embed = F.normalize(embed, dim=-1) if normalize else embed
        if ema:
            self.register_buffer("embed", embed)
            self.register_buffer("embed_avg", embed.clone())
        else:
            self.embed = nn.Parameter(embed)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initted", torch.tensor(init == "random"))

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, dim]`` codes as matched (l2-normalised when ``normalize``)."""
        return F.normalize(self.embed, dim=-1) if self.normalize and not self.ema else self.embed

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., dim]`` of long ``indices`` ``[...]``."""
        return F.embedding(indices, self.codebook.float())

    def nearest(self, flat: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Index ``[N]`` of the closest of ``codes`` (default the codebook) to each of ``flat`` ``[N, D]``."""
        codes = (self.codebook if codes is None else codes).float()
        if self.normalize:
            return (F.normalize(flat, dim=-1) @ codes.t()).argmax(-1)
        dist2 = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(-1)  # (N, K)
        return dist2.argmin(-1)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize ``x`` ``[..., dim]``; in training mode also initialise/update the codebook."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"VectorQuantizer expects vectors of size {self.dim}, got shape {tuple(x.shape)}"
            )
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, self.dim).float()  # (N, D)
            if self.normalize:
                flat = F.normalize(flat, dim=-1)
            if self.training and not bool(self.initted):
                self._initialise(flat.detach())
            idx = self.nearest(flat.detach())  # (N,)
            q = F.embedding(idx, self.codebook.float())  # (N, D), carries codebook gradients when not EMA
            counts = torch.bincount(idx, minlength=self.codebook_size).float()  # (K,)
            loss = self.commitment_weight * F.mse_loss(flat, q.detach())
            if not self.ema:
                loss = loss + F.mse_loss(q, flat.detach())
            if self.training:
                self._update(flat.detach(), idx, counts.clone())
            out = rotate_to(flat, q.detach()) if self.gradient == "rotation" else flat + (q - flat).detach()
        return QuantizerOutput(out.view(x.shape).to(x.dtype), idx.view(x.shape[:-1]), loss, counts[None])

    @torch.no_grad()
    def _initialise(self, flat: torch.Tensor) -> None:
        """Codes from the first training batch: random vectors of it, refined by k-means if asked."""
        g = torch.Generator(device=flat.device).manual_seed(0)
        pick = torch.randint(len(flat), (self.codebook_size,), device=flat.device, generator=g)
        if len(flat) >= self.codebook_size:
            pick = torch.randperm(len(flat), device=flat.device, generator=g)[: self.codebook_size]
        codes = flat[pick].clone()  # (K, D)
        for _ in range(self.kmeans_iters if self.init == "kmeans" else 0):
            assign = self.nearest(flat, codes)
            sums = torch.zeros_like(codes).index_add_(0, assign, flat)
            n = torch.bincount(assign, minlength=self.codebook_size).float()
            codes = torch.where(n[:, None] > 0, sums / n.clamp(min=1)[:, None], codes)  # empty: keep
            codes = F.normalize(codes, dim=-1) if self.normalize else codes
        _broadcast(codes)
        self.embed.data.copy_(codes)
        if self.ema:
            self.embed_avg.copy_(codes)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA statistics (synchronised across DDP ranks), EMA codes and dead-code restarts."""
        sums = flat.new_zeros(self.codebook_size, self.dim).index_add_(0, idx, flat)  # (K, D)
        _all_reduce(counts, sums)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        if self.ema:
            self.embed_avg.lerp_(sums, 1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + 1e-5) / (n + self.codebook_size * 1e-5) * n  # Laplace smoothing
            codes = self.embed_avg / smoothed[:, None]
            self.embed.copy_(F.normalize(codes, dim=-1) if self.normalize else codes)
        dead = self.cluster_size < self.dead_threshold  # (K,)
        if self.dead_threshold > 0 and bool(dead.any()):
            fresh = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]  # (n_dead, D)
            codes = self.embed.data.clone()
            codes[dead] = fresh
            _broadcast(codes)
            self.embed.data.copy_(codes)
            self.cluster_size[dead] = self.dead_threshold
            if self.ema:
                self.embed_avg[dead] = codes[dead] * self.dead_threshold


class ResidualVectorQuantizer(nn.Module):
    """Residual VQ: each level quantizes what the previous levels left (SoundStream, EnCodec).

    Args:
        dim: vector size.
        codebook_size: codes per level.
        num_levels: number of quantizers applied in sequence.
        quantizer_dropout: probability that a training batch uses only the first ``n ~ U{1..levels}``
            levels, so the decoder learns to work at every bitrate (the same ``n`` on every DDP rank).
        **kwargs: ``VectorQuantizer`` options shared by every level.
    """

    def __init__(
        self, dim: int, codebook_size: int, num_levels: int, quantizer_dropout: float = 0.0, **kwargs: object
    ) -> None:
        super().__init__()
        if num_levels < 1 or not 0 <= quantizer_dropout <= 1:
            raise ValueError(
                f"need num_levels >= 1 and 0 <= quantizer_dropout <= 1, got {num_levels}, {quantizer_dropout}"
            )
        self.dim, self.codebook_size, self.quantizer_dropout = dim, codebook_size, quantizer_dropout
        self.levels = nn.ModuleList(VectorQuantizer(dim, codebook_size, **kwargs) for _ in range(num_levels))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def _levels_this_batch(self) -> int:
        if not self.training or self.quantizer_dropout == 0:
            return self.num_levels
        self.step += 1
        g = torch.Generator().manual_seed(int(self.step))  # a function of the step: equal on all ranks
        if float(torch.rand((), generator=g)) >= self.quantizer_dropout:
            return self.num_levels
        return int(torch.randint(1, self.num_levels + 1, (), generator=g))

    def forward(self, x: torch.Tensor, num_levels: int | None = None) -> QuantizerOutput:
        """Quantize ``x`` ``[..., dim]`` with ``num_levels`` levels (default all, or dropout's draw)."""
        n = self._levels_this_batch() if num_levels is None else num_levels
        if not 1 <= n <= self.num_levels:
            raise ValueError(f"num_levels must be in [1, {self.num_levels}], got {n}")
        residual, outs = x, []
        for vq in self.levels[:n]:
            outs.append(vq(residual))
            residual = residual - outs[-1].quantized.detach()
        counts = torch.zeros(self.num_levels, self.codebook_size, device=x.device)  # unused levels: 0
        counts[:n] = torch.cat([out.counts for out in outs])
        quantized, loss = sum(out.quantized for out in outs), sum(out.loss for out in outs)
        return QuantizerOutput(quantized, torch.stack([out.indices for out in outs], dim=-1), loss, counts)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of the codes ``[..., dim]`` of ``indices`` ``[..., n]`` (the first ``n`` levels)."""
        if not 1 <= indices.shape[-1] <= self.num_levels:
            raise ValueError(
                f"indices need 1..{self.num_levels} levels in their last dim, got {tuple(indices.shape)}"
            )
        return sum(vq.lookup(indices[..., i]) for i, vq in enumerate(self.levels[: indices.shape[-1]]))


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al., 2023): each of ``len(levels)`` channels is bounded and
    rounded to ``levels[i]`` values; the code is the mixed-radix number of the digits. A small encoder
    trained briefly leaves its channels correlated (32% of 1000 codes used after 300 image steps); the
    entropy penalty (MAGVIT-v2's) spreads the batch over the grid (weight 0.01: 88-92%, 99.9% held out;
    0.1: 98%, but 0.9 dB lower PSNR on photos).

    Args:
        levels: values per channel, e.g. ``(8, 5, 5, 5)`` for 1000 codes or ``(8, 8, 8, 6, 5)`` for 15360.
        entropy_weight: weight of the entropy penalty in ``QuantizerOutput.loss`` (training only; 0: off).
        temperature: softness of the assignments of the entropy penalty, in squared level steps.
    """

    def __init__(self, levels: Sequence[int], entropy_weight: float = 0.0, temperature: float = 0.5) -> None:
        super().__init__()
        levels = [int(n) for n in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels need at least one channel, each >= 2 values, got {levels}")
        if entropy_weight < 0 or temperature <= 0:
            raise ValueError(
                f"need entropy_weight >= 0 and temperature > 0, got {entropy_weight}, {temperature}"
            )
        self.levels_list = levels
        self.dim = len(levels)
        self.codebook_size = int(torch.tensor(levels).prod())
        self.entropy_weight, self.temperature = entropy_weight, temperature
        basis = torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0)
        self.register_buffer("levels", torch.tensor(levels), persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash to ``levels`` values per channel (an even count is shifted half a step)."""
        half_l = (self.levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize ``z`` ``[..., len(levels)]`` to codes in ``[-1, 1]``, straight-through."""
        if z.shape[-1] != self.dim:
            raise ValueError(
                f"FSQ with levels {self.levels_list} expects {self.dim} channels, got {tuple(z.shape)}"
            )
        with torch.autocast(z.device.type, enabled=False):
            bounded = self._bound(z.float())
            rounded = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
            quantized = rounded / (self.levels // 2)  # (..., d) in [-1, 1]
            indices = self.codes_to_indices(quantized.detach())
            loss = z.new_zeros((), dtype=torch.float32)
            if self.training and self.entropy_weight > 0:
                loss = self.entropy_weight * entropy_penalty(self.code_probabilities(bounded))
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size).float()[None]
        return QuantizerOutput(quantized.to(z.dtype), indices, loss, counts)

    def code_probabilities(self, bounded: torch.Tensor) -> torch.Tensor:
        """Soft assignments ``[N, K]`` of bounded latents ``[..., d]`` to the codes: per channel a softmax of
        ``-(distance in level steps)^2 / temperature``, multiplied over channels in ``codes_to_indices``'
        order. Costs ``N * K`` floats: meant for codebooks of a few thousand codes."""
        flat = bounded.reshape(-1, self.dim)  # (N, d)
        probs = flat.new_ones(len(flat), 1)  # (N, 1)
        for channel, n in enumerate(self.levels_list):
            grid = torch.arange(n, device=flat.device) - n // 2  # (n,) the channel's values
            p = torch.softmax(-(flat[:, channel, None] - grid).pow(2) / self.temperature, dim=-1)  # (N, n)
            probs = (p[:, :, None] * probs[:, None, :]).flatten(1)  # (N, n * previous): a new high digit
        return probs

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Long indices ``[...]`` of codes ``[..., d]`` on the FSQ grid."""
        half = self.levels // 2
        digits = (codes * half + half).round().long()  # (..., d) in [0, levels)
        return (digits * self.basis).sum(-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., d]`` in ``[-1, 1]`` of long ``indices`` ``[...]``."""
        digits = (indices[..., None] // self.basis) % self.levels  # (..., d)
        half = self.levels // 2
        return (digits - half).float() / half
