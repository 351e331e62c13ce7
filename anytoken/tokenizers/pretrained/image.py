"""The image VQ-VAEs of Emu3 and Chameleon as anytoken image tokenizers (``ImageGrid``), over transformers'
``Emu3VQVAE`` and ``ChameleonVQVAE``.

Each codes a square ``image_size`` picture (others are resized and centre-cropped) as an ``h x w`` grid,
``h = image_size / 2 ** (len(channel_multiplier) - 1)``, of ids in ``[0, codebook size)``; pixels enter in
``[-1, 1]`` as both models' image processors give them. transformers ships Chameleon's VQ-VAE without its
decoder, so ``chameleon_vq`` encodes only (image-to-text tasks); ``emu3_vq`` encodes and decodes.
"""

from __future__ import annotations

from typing import Any

import torch

from anytoken.tokenizers.base import Tokenizer, register_tokenizer
from anytoken.tokenizers.image_grid import ImageGrid, ImageInput
from anytoken.tokenizers.pretrained.hub import HubModel, register_hub_model, transformers


class HubImageVQ(ImageGrid, HubModel, Tokenizer):
    """A transformers image VQ-VAE as an ``ImageGrid`` tokenizer. Subclasses implement ``_encode`` and
    ``_decode`` (the calls into the library's model) and say where the config keeps the codebook size.

    Args:
        hub_config: the model's config (``config.json``) as JSON values.
        image_size: side of the square pictures it codes (None: ``default_image_size()``).
        model: an already loaded model (``from_hub_directory``).
    """

    modality = "image"
    codebook_key: str  # the config field holding the number of codes

    def __init__(self, hub_config: dict[str, Any], image_size: int | None = None, model: Any = None) -> None:
        super().__init__(hub_config, model)
        config = self.model.config
        self.downsample = 2 ** (len(config.channel_multiplier) - 1)  # pixels per token side
        size = self.default_image_size() if image_size is None else image_size
        if not isinstance(size, int) or size < self.downsample or size % self.downsample:
            raise ValueError(f"{self.name}: image_size must be a positive multiple of {self.downsample} (the "
                             f"model's downsampling), got {size!r}")
        self.image_size = size
        self._vocab_size = int(getattr(config, self.codebook_key))

    def default_image_size(self) -> int:
        """The side the model was trained at."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)`` of the token grid."""
        side = self.image_size // self.downsample
        return side, side

    def config(self) -> dict[str, Any]:
        return {"hub_config": self.hub_config, "image_size": self.image_size}

    @torch.no_grad()
    def encode(self, images: ImageInput) -> torch.Tensor:
        """Images (see ``prepare``) -> ids ``[B, h, w]`` long."""
        x = self.prepare(images) * 2 - 1  # (B, 3, S, S) in [-1, 1]
        return self._encode(x).long().view(-1, *self.grid)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, h, w]``, ``[h, w]`` or flat ``[B, h * w]`` -> images ``[B, 3, S, S]`` in ``[0, 1]``."""
        return (self._decode(self.check_grid(ids)).float() * 0.5 + 0.5).clamp(0, 1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, 3, S, S]`` in ``[-1, 1]`` -> ids ``[B, h, w]`` (or flat)."""
        raise NotImplementedError

    def _decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, h, w]`` -> pixels ``[B, 3, S, S]`` about ``[-1, 1]``."""
        raise NotImplementedError


@register_tokenizer
@register_hub_model
class Emu3VQTokenizer(HubImageVQ):
    """Emu3's vision tokenizer (Wang et al. 2024; SBER-MoVQGAN based) through ``transformers.Emu3VQVAE``:
    8x downsampling, 32768 codes; an image is its video of ``temporal_downsample_factor`` equal frames."""

    name = "emu3_vq"
    model_type = "emu3_vqgan"
    codebook_key = "codebook_size"

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        return transformers().Emu3VQVAEConfig, transformers().Emu3VQVAE

    def default_image_size(self) -> int:
        return 512  # Emu3's smallest training resolution (its processor's min_pixels is 512 * 512)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        sizes = torch.tensor([[self.image_size, self.image_size]] * len(x))
        return torch.stack(self.model.encode(x, image_sizes=sizes, return_dict=True).image_tokens)

    def _decode(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.decode(ids)


@register_tokenizer
@register_hub_model
class ChameleonVQTokenizer(HubImageVQ):
    """Chameleon's image tokenizer (Chameleon Team 2024; Gafni et al.'s Make-A-Scene VQGAN) through
    ``transformers.ChameleonVQVAE``: 512 px -> 32 x 32 = 1024 ids of 8192 codes. Encode only: transformers
    has no decoder for it (image-to-text tasks such as captioning use it; text-to-image needs a decoder)."""

    name = "chameleon_vq"
    model_type = "chameleon_vqgan"
    codebook_key = "num_embeddings"
    decodes = False

    @classmethod
    def hub_classes(cls) -> tuple[type, type]:
        return transformers().ChameleonVQVAEConfig, transformers().ChameleonVQVAE

    def default_image_size(self) -> int:
        return int(self.model.config.resolution)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x, return_dict=True).image_tokens  # (B * h * w,)

    def _decode(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("chameleon_vq: transformers' ChameleonVQVAE has no decoder, so its ids "
                                  "cannot become pictures; use it to read images (captioning) or use emu3_vq")
