"""``ImageGrid``: what every image tokenizer that codes a square picture as an ``h x w`` grid of ids shares,
anytoken's own VQ tokenizer and the adapted Emu3 and Chameleon VQ-VAEs alike: the accepted inputs, the
grammar (exactly ``h * w`` ids), the id checks of ``decode``, media files and reconstruction metrics.

Inputs are resized and centre-cropped to ``image_size`` (``image_io.fit_square``); values outside
``[0, 1]``, NaNs, ids outside the codebook or a grid other than ``h x w`` raise ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from anytoken.tokenizers.base import SegmentGrammar
from anytoken.tokenizers.image_io import IMAGE_WRITE_FORMATS, fit_square, image_to_tensor, load_image, to_rgb

ImageInput = torch.Tensor | Image.Image | list[Image.Image]


class ImageGrid:
    """Input policy, grammar, files and metrics of grid image tokenizers, which define ``image_size`` (the
    side of the square pictures they code), ``grid`` (``(h, w)``), ``vocab_size`` and ``_device``."""

    name: ClassVar[str] = "image grid"  # what error messages call the family (each tokenizer has its own)
    write_suffixes: ClassVar[tuple[str, ...]] = tuple(IMAGE_WRITE_FORMATS)
    decodes: ClassVar[bool] = True  # False: ids cannot become pictures (an encoder without its decoder)
    image_size: int
    grid: tuple[int, int]
    vocab_size: int
    _device: torch.device

    @property
    def tokens_per_image(self) -> int:
        """Ids per picture: ``h * w``."""
        h, w = self.grid
        return h * w

    def grammar(self) -> SegmentGrammar:
        return SegmentGrammar.fixed(self.vocab_size, self.tokens_per_image)

    def prepare(self, images: ImageInput) -> torch.Tensor:
        """PIL image(s) or a float tensor ``[B, 3, H, W]``/``[3, H, W]`` in ``[0, 1]`` -> ``[B, 3, S, S]``
        on the model's device, resized and centre-cropped to ``image_size`` when the size differs."""
        size, what = self.image_size, f"{self.name}.encode"
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, list):
            if not images or not all(isinstance(i, Image.Image) for i in images):
                raise ValueError(f"{what} takes a non-empty list of PIL images or a tensor")
            return torch.stack([image_to_tensor(to_rgb(i), size) for i in images]).to(self._device)
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            got = f"{type(images).__name__} {getattr(images, 'dtype', '')}"
            raise ValueError(f"{what} needs float images in [0, 1], got {got}")
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
            raise ValueError(f"{what} needs images [B, 3, H, W] (or [3, H, W]), got {tuple(images.shape)}")
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError(f"{what} needs finite pixel values in [0, 1] (divide uint8 images by 255)")
        return fit_square(x, size).clamp(0, 1).to(self._device)

    def check_grid(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, h, w]``, ``[h, w]`` or flat ``[B, h * w]``/``[h * w]`` -> long ``[B, h, w]`` on the
        model's device; ``ValueError`` for non-integers, ids outside the codebook or another grid."""
        ids = self.check_ids(ids)
        h, w = self.grid
        if ids.dim() == 1 or ids.shape == (h, w):
            ids = ids[None]
        if ids.dim() == 2 and ids.shape[-1] == h * w:
            ids = ids.view(-1, h, w)
        if ids.dim() != 3 or ids.shape[1:] != (h, w) or ids.shape[0] == 0:
            raise ValueError(
                f"{self.name}: token grid must be {h} x {w} ([B, {h}, {w}], [{h}, {w}] or {h * w} flat "
                f"ids per image), got shape {tuple(ids.shape)}"
            )
        return ids.to(self._device)

    def reconstruction_error(self, x: Any) -> float:
        """Mean squared error of ``decode(encode(x))`` against ``x`` in ``[0, 1]`` pixels."""
        x = self.prepare(x)
        return float((self.decode(self.encode(x)) - x).pow(2).mean())

    def reconstruction_metrics(
        self, images: torch.Tensor, reconstruction: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """PSNR (dB) and SSIM of reconstructions against images, both ``[B, 3, S, S]`` in ``[0, 1]``."""
        from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

        recon = reconstruction.detach().float().clamp(0, 1)
        return {
            "psnr": peak_signal_noise_ratio(recon, images.float(), data_range=1.0, dim=(1, 2, 3)),
            "ssim": structural_similarity_index_measure(recon, images.float(), data_range=1.0),
        }

    def read_media(self, path: Path) -> torch.Tensor:
        """An image file -> ``[1, 3, S, S]`` (``load_image``'s checks, then resize + centre crop)."""
        return image_to_tensor(load_image(path, self.image_size), self.image_size)[None]

    def write_media(self, media: torch.Tensor, path: Path) -> None:
        """Images ``[3, H, W]`` or ``[B, 3, H, W]`` in ``[0, 1]`` -> one image file (a grid when ``B > 1``) in
        the format of the suffix (``IMAGE_WRITE_FORMATS``)."""
        from torchvision.utils import make_grid

        x = media if media.dim() == 3 else make_grid(media, nrow=min(8, len(media)), padding=2)
        array = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(array).save(path, format=IMAGE_WRITE_FORMATS[Path(path).suffix.lower()])
