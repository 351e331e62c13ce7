"""The image VQ tokenizer (docs/images.md): a VQGAN-style conv encoder, a VQ or FSQ quantizer, a decoder.

``encode`` maps images ``[B, 3, H, W]`` in ``[0, 1]`` (or PIL images) to ids ``[B, h, w]``, ``h = H /
downsample``; ``decode`` maps ids back; ``grammar()`` is exactly ``h * w`` ids. Other sizes are resized and
centre-cropped (``image_io.fit_square``); values outside ``[0, 1]``, NaNs, ids outside the codebook or a grid
other than ``h x w`` raise ``ValueError``. The optional perceptual loss reads VGG16 weights from a local file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.loading import read_state
from anytoken.tokenizers.base import Tokenizer, register_tokenizer
from anytoken.tokenizers.image_grid import ImageGrid, ImageInput
from anytoken.tokenizers.quantizers import FSQ, TokenizerOutput, TrainableTokenizer, VectorQuantizer

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2 ... relu5_3, the LPIPS layers


@dataclass
class ImageVQConfig:
    """Architecture, quantizer and training losses of the image VQ tokenizer."""

    image_size: int = 64  # side of the square images it encodes (others are resized and cropped)
    downsample: int = 8  # pixels per token side: a power of two, 8 or 16 in VQGAN
    channels: int = 64  # decoder width at full resolution; its stage i has channels * channel_mult[i]
    encoder_channels: int = 32  # encoder width likewise (a light encoder keeps tokenizing cheap)
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])  # one per stride-2 stage
    num_res_blocks: int = 1  # residual blocks per stage, at least 1
    quantizer: Literal["vq", "fsq"] = "vq"  # vector quantization or finite scalar quantization
    codebook_size: int = 1024  # "vq": number of codes ("fsq": the product of fsq_levels)
    latent_dim: int = 4  # "vq": code dimension; low, l2-normalised codes keep codebooks alive (ViT-VQGAN)
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # "fsq": values per channel
    fsq_entropy_weight: float = 0.01  # "fsq": entropy penalty spreading latents over the grid; 0: off
    vq_ema: bool = True  # "vq": EMA codebook (else learned through a codebook loss)
    vq_decay: float = 0.99  # "vq": EMA decay of codes and of the usage counts that find dead codes
    vq_normalize: bool = True  # "vq": l2-normalised codes (cosine similarity)
    vq_init: Literal["kmeans", "data", "random"] = "kmeans"  # "vq": codebook initialisation
    vq_dead_threshold: float = 1.0  # "vq": restart codes picked fewer times per batch (EMA); 0: never
    vq_gradient: Literal["ste", "rotation"] = "ste"  # "vq": straight-through or the rotation trick
    commitment_weight: float = 0.25  # "vq": weight of the commitment loss
    l1_weight: float = 1.0  # reconstruction L1 weight
    l2_weight: float = 0.0  # reconstruction L2 weight
    perceptual_weight: float = 0.0  # VGG16 feature distance weight; > 0 needs perceptual_path
    perceptual_path: str | None = None  # local torchvision VGG16 weights (.pth state dict or .safetensors)
    disc_weight: float = 0.0  # adversarial weight; 0 disables the patch discriminator
    disc_start: int = 0  # training step at which the adversarial loss starts
    disc_channels: int = 64  # discriminator width
    disc_layers: int = 3  # discriminator stride-2 layers (receptive field 70 px at 3)

    def __post_init__(self) -> None:
        stages = math.log2(self.downsample) if self.downsample > 0 else -1
        if stages < 1 or stages != int(stages) or self.image_size % self.downsample:
            raise ValueError(
                f"downsample must be a power of two >= 2 dividing image_size, got {self.downsample} "
                f"for image_size {self.image_size}"
            )
        if len(self.channel_mult) != int(stages) or min(self.channel_mult) < 1:
            raise ValueError(
                f"channel_mult needs log2(downsample) = {int(stages)} entries >= 1, got {self.channel_mult}"
            )
        if min(self.channels, self.encoder_channels) < 8 or self.channels % 8 or self.encoder_channels % 8:
            raise ValueError(f"channels and encoder_channels must be multiples of 8 (GroupNorm): {self}")
        if self.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if self.quantizer not in ("vq", "fsq"):
            raise ValueError(f"quantizer must be 'vq' or 'fsq', got {self.quantizer!r}")
        if self.perceptual_weight > 0 and not self.perceptual_path:
            raise ValueError(
                "perceptual_weight > 0 needs perceptual_path: local VGG16 weights (nothing downloads)"
            )
        weights = (self.l1_weight, self.l2_weight, self.perceptual_weight, self.disc_weight)
        if min(*weights, self.fsq_entropy_weight) < 0:
            raise ValueError("loss weights must be >= 0")

    @property
    def grid(self) -> int:
        return self.image_size // self.downsample


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4), c, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice, plus a (1x1 if the width changes) skip."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _encoder(c: ImageVQConfig, out_dim: int) -> nn.Sequential:
    """Images ``[B, 3, S, S]`` in ``[-1, 1]`` -> latents ``[B, out_dim, S / f, S / f]``. Residual blocks
    only after each stride-2 conv: encoding runs on every training step of the models that consume it."""
    widths = [c.encoder_channels * m for m in c.channel_mult]
    layers: list[nn.Module] = [nn.Conv2d(3, c.encoder_channels, 3, padding=1)]
    prev = c.encoder_channels
    for width in widths:
        layers.append(nn.Conv2d(prev, width, 3, stride=2, padding=1))
        layers += [ResBlock(width, width) for _ in range(c.num_res_blocks)]
        prev = width
    layers += [ResBlock(prev, prev), _norm(prev), nn.SiLU(), nn.Conv2d(prev, out_dim, 1)]
    return nn.Sequential(*layers)


def _decoder(c: ImageVQConfig, in_dim: int) -> nn.Sequential:
    """Codes ``[B, in_dim, h, w]`` -> images ``[B, 3, h * f, w * f]`` (about ``[-1, 1]``): residual blocks
    at each resolution below the output's, then nearest upsampling + conv3x3."""
    widths = [c.channels * m for m in reversed(c.channel_mult)]
    prev = widths[0]
    layers: list[nn.Module] = [nn.Conv2d(in_dim, prev, 3, padding=1), ResBlock(prev, prev)]
    for width in widths:
        layers += [ResBlock(prev, width)] + [ResBlock(width, width) for _ in range(c.num_res_blocks - 1)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1)]
        prev = width
    layers += [_norm(prev), nn.SiLU(), nn.Conv2d(prev, 3, 3, padding=1)]
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix/VQGAN) with GroupNorm: images ``[B, 3, S, S]`` -> real/fake logits per patch."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        prev = channels
        for i in range(1, layers + 1):
            width = channels * min(2**i, 8)
            mods += [nn.Conv2d(prev, width, 4, 2 if i < layers else 1, 1), _norm(width), nn.LeakyReLU(0.2)]
            prev = width
        mods.append(nn.Conv2d(prev, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, h', w')

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """The hinge generator loss of ``fake`` (``real`` is unused: the audio discriminator's signature)."""
        return {"adversarial": -self(fake).mean()}

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Hinge loss on real images and (detached) reconstructions."""
        return F.relu(1 - self(real)).mean() + F.relu(1 + self(fake.detach())).mean()


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on frozen VGG16 features (unit-normalised channels, equal layer weights).

    Args:
        path: torchvision VGG16 weights (``.safetensors``, else ``torch.load``); ``features.*`` keys are used.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        from torchvision.models import vgg16

        if not Path(path).is_file():
            raise ValueError(f"perceptual_path {path!r} is not a file (local VGG16 weights are needed)")
        state = read_state(path)
        features = vgg16().features[: _VGG16_TAPS[-1] + 1]
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        missing, _ = features.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"{path}: not VGG16 weights (missing {missing[:4]})")
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always frozen and in eval mode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean feature distance between images ``x`` and ``y`` ``[B, 3, S, S]`` in ``[0, 1]``."""
        h = torch.cat([x, y]).sub(self.mean).div(self.std)
        loss = x.new_zeros(())
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _VGG16_TAPS:
                fx, fy = F.normalize(h, dim=1).chunk(2)
                loss = loss + (fx - fy).pow(2).sum(1).mean()
        return loss / len(_VGG16_TAPS)


@register_tokenizer
class ImageVQTokenizer(ImageGrid, TrainableTokenizer, Tokenizer):
    """Images <-> grids of codebook ids (an ``ImageGrid``). Keyword arguments: ``ImageVQConfig``'s fields."""

    name = "image_vq"
    modality = "image"
    training_only = {"perceptual_weight": 0.0, "perceptual_path": None, "disc_weight": 0.0}

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.cfg = ImageVQConfig(**config)
        c = self.cfg
        if c.quantizer == "vq":
            vq = VectorQuantizer(c.latent_dim, c.codebook_size, **self._vq_options())
            self.quantizer: VectorQuantizer | FSQ = vq
        else:
            self.quantizer = FSQ(c.fsq_levels, entropy_weight=c.fsq_entropy_weight)
        self.encoder = _encoder(c, self.quantizer.dim)
        self.decoder = _decoder(c, self.quantizer.dim)
        self.discriminator = PatchDiscriminator(c.disc_channels, c.disc_layers) if c.disc_weight > 0 else None
        self.perceptual = PerceptualLoss(c.perceptual_path) if c.perceptual_weight > 0 else None

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def image_size(self) -> int:
        """Side of the square images it codes."""
        return self.cfg.image_size

    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)`` of the token grid."""
        return self.cfg.grid, self.cfg.grid

    @torch.no_grad()
    def encode(self, images: ImageInput) -> torch.Tensor:
        """Images -> ids ``[B, h, w]`` long (see ``prepare`` for the accepted inputs)."""
        z = self.encoder(self.prepare(images) * 2 - 1).permute(0, 2, 3, 1)  # (B, h, w, D)
        if isinstance(self.quantizer, FSQ):
            return self.quantizer.codes_to_indices(self.quantizer(z).quantized)
        return self.quantizer.nearest(z.reshape(-1, z.shape[-1]).float()).view(z.shape[:-1])

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, h, w]``, ``[h, w]`` or flat ``[B, h * w]`` -> images ``[B, 3, H, W]`` in ``[0, 1]``."""
        return self.decode_codes(self.quantizer.lookup(self.check_grid(ids))).clamp(0, 1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h, w, D]`` -> images ``[B, 3, H, W]`` (unclamped, about ``[0, 1]``)."""
        return self.decoder(codes.permute(0, 3, 1, 2).to(self._device)) * 0.5 + 0.5

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Images ``[B, 3, S, S]`` in ``[0, 1]`` -> (reconstruction ``[B, 3, S, S]``, ``QuantizerOutput``)."""
        z = self.encoder(images * 2 - 1).permute(0, 2, 3, 1)  # (B, h, w, D)
        q = self.quantizer(z)
        return self.decode_codes(q.quantized), q

    def loss(self, images: torch.Tensor, step: int = 0) -> TokenizerOutput:
        """Reconstruction (+ perceptual, + adversarial after ``disc_start``) + quantizer loss."""
        c = self.cfg
        recon, q = self(images)
        terms = {"l1": (c.l1_weight, (recon - images).abs().mean())}
        terms["mse"] = (c.l2_weight, (recon - images).pow(2).mean())
        if self.perceptual is not None:
            terms["perceptual"] = (c.perceptual_weight, self.perceptual(recon, images))
        terms |= self._adversarial(images, recon, step, {"adversarial": c.disc_weight})
        return self._output(terms, q, recon)
