"""How image files enter anytoken (the datasets and the image tokenizers read them through here; the
CLI and demos too). The policy:

- ``load_image``: the file is verified (``Image.verify()``: PNG checksums, missing end chunk) and fully
  decoded, so truncated or corrupt files fail here, not inside a DataLoader worker (truncated JPEGs are
  caught while ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps Pillow's default, False). The result is a new
  RGB image of the file's size: 16-bit grayscale is scaled to 8 bits, alpha is composited on white (as
  transformers' ``convert_to_rgb``), EXIF orientation is not applied (COCO annotations refer to the stored
  grid), animated files give their first frame.
- ``image_to_tensor``/``fit_square``: the shorter side is resized to ``S`` (bicubic, antialiased), then
  centre-cropped to ``S x S``. Normalisation belongs to the model, not to the data.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def load_image(path: str | Path) -> Image.Image:
    """The image file at ``path`` as a fully loaded RGB image; ``ValueError`` naming the file when it is
    missing, not an image, truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read image file: {path} ({error})") from error
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # verify() leaves the image unusable, so decode from a second handle
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb(image)
    except Image.UnidentifiedImageError as error:
        raise ValueError(f"not a readable image file: {path}") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"image too large to decode safely: {path} ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated data as OSError and broken PNG chunks as SyntaxError.
        raise ValueError(f"truncated or corrupt image file: {path} ({error})") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any Pillow mode, following the module's policy."""
    if image.mode in _WIDE_GRAY_MODES:
        gray = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8  # 16-bit -> 8-bit
        return Image.fromarray(gray.astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``[..., H, W]`` -> ``[..., size, size]`` by the module's policy (unchanged when already so)."""
    if x.shape[-2:] == (size, size):
        return x
    x = v2.functional.resize(x, size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    return v2.functional.center_crop(x, size)


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """One RGB PIL image -> ``[3, size, size]`` float in ``[0, 1]``."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image (load it with anytoken's load_image), got mode {image.mode}")
    x = fit_square(v2.functional.pil_to_tensor(image), size)  # uint8, resized as the original Compose did
    return v2.functional.to_dtype(x, torch.float32, scale=True).clamp(0, 1)
