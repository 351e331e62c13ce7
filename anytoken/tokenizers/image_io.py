"""How image files enter anytoken: ``load_image`` (file -> RGB PIL) and ``image_to_tensor`` (RGB PIL ->
square float tensor). Both live in ``tokenizers/`` because the image tokenizers read media files too
(``anytoken encode``) and tokenizers never import tasks; ``anytoken.tasks.data`` re-exports them.

Policy of ``load_image``:

- The file is read once, checked with ``Image.verify()`` (PNG chunk checksums and a missing end chunk)
  and then fully decoded, so truncated or corrupt PNG/JPEG files fail here, not later inside a
  DataLoader worker. Detection of truncated JPEGs relies on ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
  being False, Pillow's default; this module never changes that global.
- The result is always a new RGB image. Grayscale, palette, CMYK and other modes convert with Pillow;
  16-bit grayscale (modes ``I;16*`` and ``I``) is scaled to 8 bits rather than clipped; images with an
  alpha channel or a transparency key are composited on a white background (as HuggingFace
  transformers' ``convert_to_rgb`` does).
- Size is kept as is (a 1x1 image is fine): resizing belongs to the transforms.
- EXIF orientation is not applied: COCO annotations refer to the stored pixel grid.
- Animated files give their first frame.

Policy of ``image_to_tensor`` (wrong sizes): resize the shorter side to ``S`` (bicubic, antialiased), then
centre-crop to ``S x S``; the aspect ratio is kept and the longer side loses its borders. Normalisation
belongs to the model (an encoder knows its own mean/std), not to the data.
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
    """Opens an image file, verifies it and returns it as RGB.

    Args:
        path: the image file.

    Returns:
        A fully loaded RGB ``PIL.Image.Image`` of the file's size.

    Raises:
        ValueError: naming the file, when it is missing, is not an image, or is truncated or corrupt.
    """
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


def image_to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """One RGB PIL image -> ``[3, size, size]`` float in ``[0, 1]``."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image (load it with anytoken's load_image), got mode {image.mode}")
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    return transform(image).clamp(0, 1)
