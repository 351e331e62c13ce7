"""Image preprocessing shared by the DataModules: PIL RGB -> float tensor ``[3, S, S]`` in ``[0, 1]``.

Policy: resize the shorter side to ``S`` (bicubic, antialiased), then centre-crop to ``S x S``.
Normalisation belongs to the image encoder (it knows its own mean/std), not to the data.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2


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
