"""The image peers: JPEG and WebP through Pillow, each image at the quality whose file is nearest a target
bits per pixel (file bytes, headers included, as a user would store it)."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch
from PIL import Image, features

from anytoken.tasks.metrics.image import psnr, ssim

PEERS = {"JPEG": "jpg", "WebP": "webp"}  # name -> Pillow feature that must be compiled in
_FORMAT = {"JPEG": "JPEG", "WebP": "WEBP"}


def _round_trip(array: np.ndarray, peer: str, quality: int) -> tuple[bytes, np.ndarray]:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=_FORMAT[peer], quality=quality)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        return data, np.asarray(decoded.convert("RGB"))


def nearest_quality(array: np.ndarray, peer: str, target_bpp: float) -> tuple[int, float]:
    """``(quality 1-100, its bpp)`` of ``array`` ``[H, W, 3]`` uint8 whose file is nearest ``target_bpp``
    (bisection: the file size grows with the quality)."""
    pixels, cache = array.shape[0] * array.shape[1], {}

    def bpp(q: int) -> float:
        if q not in cache:
            cache[q] = len(_round_trip(array, peer, q)[0]) * 8 / pixels
        return cache[q]

    lo, hi = 1, 100
    while lo < hi:  # the lowest quality at or above the target
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if bpp(mid) < target_bpp else (lo, mid)
    best = min((q for q in (lo - 1, lo) if q >= 1), key=lambda q: (abs(bpp(q) - target_bpp), q))
    return best, bpp(best)


def peer_row(peer: str, images: torch.Tensor, target_bpp: float) -> dict[str, Any]:
    """Row of ``peer`` on ``images`` ``[N, 3, H, W]`` in ``[0, 1]``, each at the quality nearest target."""
    row: dict[str, Any] = {"system": f"{peer} (target {target_bpp:.3g} bpp)", "target_bpp": target_bpp}
    if not features.check(PEERS[peer]):
        return row | {"missing": {"peer": f"Pillow built without {peer}"},
                      "note": f"missing: this Pillow was built without {peer} support"}
    arrays = [(x.permute(1, 2, 0) * 255).round().byte().numpy() for x in images]
    qualities, bpps = zip(*(nearest_quality(a, peer, target_bpp) for a in arrays))
    start = time.perf_counter()
    files = [_round_trip(a, peer, q)[0] for a, q in zip(arrays, qualities)]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files]
    decode_s = time.perf_counter() - start
    recon = torch.stack([torch.from_numpy(d.copy()).permute(2, 0, 1) for d in decoded]).float() / 255
    row |= {"bits_per_pixel": float(np.mean(bpps)), "qualities": list(qualities),
            "psnr": float(psnr(images, recon).mean()), "ssim": float(ssim(images, recon).mean()),
            "encode_per_s": len(images) / encode_s, "decode_per_s": len(images) / decode_s}
    if not 0.8 <= row["bits_per_pixel"] / target_bpp <= 1.25:
        row["note"] = (f"no quality reaches the target {target_bpp:.3f} bpp: the nearest average "
                       f"{row['bits_per_pixel']:.3f} bpp (qualities {min(qualities)}-{max(qualities)})")
    return row
