"""How image files enter anytoken (the datasets and the image tokenizers read them through here; the
CLI and demos too). The policy:

- ``load_image``: images above ``MAX_PIXELS`` are refused before decoding, except JPEGs, which are
  decoded at a reduced scale (``Image.draft``) when a target ``size`` is given. The file is verified
  (``Image.verify()``: PNG checksums, missing end chunk) and fully decoded, so truncated or corrupt
  files fail here, not inside a DataLoader worker (truncated JPEGs are caught while
  ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` keeps Pillow's default, False). The result is a new
  RGB image of the file's size: 16-bit grayscale is scaled to 8 bits, alpha is composited on white (as
  transformers' ``convert_to_rgb``), EXIF orientation is not applied (COCO annotations refer to the stored
  grid), animated files give their first frame.
- ``image_to_tensor``/``fit_square``: the centred square of the shorter side is cropped, then resized to
  ``S x S`` (bicubic, antialiased): cropping first keeps memory bounded for any aspect ratio (a 1 x 60000
  strip is one pixel, not a 224 x 13 million image). Normalisation belongs to the model, not to the data.
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
IMAGE_WRITE_FORMATS = {  # suffix -> Pillow format of written images
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".gif": "GIF",
}
MAX_PIXELS = 32_000_000  # decoded pixels at most (about 100 MB as RGB)


def load_image(path: str | Path, size: int | None = None) -> Image.Image:
    """The image file at ``path`` as a fully loaded RGB image; ``ValueError`` naming the file when it is
    missing, not an image, truncated, corrupt or too large. ``size``: the side the image will be brought
    to, so that a JPEG may be decoded at a reduced scale whose shorter side is still at least ``size``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read image file: {path} ({error})") from error
    return decode_image(data, str(path), size)


def decode_image(data: bytes, path: str, size: int | None = None) -> Image.Image:
    """``load_image`` of a file's bytes (e.g. a tar member); ``path`` names it in errors."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # verify() leaves the image unusable, so decode from a second handle
        with Image.open(io.BytesIO(data)) as image:
            if size is not None and image.format == "JPEG":
                image.draft("RGB", (size, size))
            width, height = image.size
            if width * height <= MAX_PIXELS:
                image.load()
                return to_rgb(image)
    except Image.UnidentifiedImageError as error:
        raise ValueError(f"not a readable image file: {path}") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"image too large to decode safely: {path} ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated data as OSError and broken PNG chunks as SyntaxError.
        raise ValueError(f"truncated or corrupt image file: {path} ({error})") from error
    raise ValueError(f"{path}: {width} x {height} pixels is more than anytoken decodes "
                     f"({MAX_PIXELS:,} pixels; "
                     "JPEGs are decoded at a reduced scale when a size is given)")


def to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any Pillow mode, following the module's policy."""
    if image.mode in _WIDE_GRAY_MODES:
        gray = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8  # 16-bit -> 8-bit
        return Image.fromarray(gray.astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def fit_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``[..., H, W]`` -> ``[..., size, size]`` by the module's policy (unchanged when already so)."""
    if x.shape[-2:] == (size, size):
        return x
    x = v2.functional.center_crop(x, min(x.shape[-2:]))  # a view: no copy at the full size
    return v2.functional.resize(x, [size, size], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """One RGB PIL image -> ``[3, size, size]`` float in ``[0, 1]``."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image (load it with anytoken's load_image), got mode {image.mode}")
    x = fit_square(v2.functional.pil_to_tensor(image), size)  # uint8, resized as the original Compose did
    return v2.functional.to_dtype(x, torch.float32, scale=True).clamp(0, 1)
