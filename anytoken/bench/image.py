"""Image benchmark: PSNR, SSIM, tokens per image, bits per pixel, codebook usage and perplexity, encode and
decode images/s of a tokenizer; then JPEG and WebP at the tokenizer's bits per pixel on the same images."""

from __future__ import annotations

from typing import Any

import torch

from anytoken.bench.codes import bits_per_token, usage
from anytoken.bench.image_peers import PEERS, peer_row
from anytoken.bench.media import MediaSet
from anytoken.bench.timing import best_of
from anytoken.tasks.metrics.image import psnr, ssim
from anytoken.tokenizers import Tokenizer


def tokenizer_row(
    tokenizer: Tokenizer, images: torch.Tensor, repeats: int, batch_size: int
) -> dict[str, Any]:
    """Round trip of ``images`` ``[N, 3, H, W]`` in ``[0, 1]`` (as ``read_media`` gives them) in batches; an
    encode-only tokenizer (decode raises ``NotImplementedError``) gets its decoded metrics marked missing."""
    ids, encode_s = best_of(lambda: [tokenizer.encode(b) for b in images.split(batch_size)], repeats)
    tokens = ids[0][0].numel()  # per image
    bpp = tokens * bits_per_token(tokenizer) / images[0, 0].numel()
    row = {"tokens_per_item": tokens, "bits_per_pixel": bpp, **usage(tokenizer, ids),
           "encode_per_s": len(images) / encode_s}
    try:
        recon, decode_s = best_of(lambda: [tokenizer.decode(i) for i in ids], repeats)
    except NotImplementedError as err:
        return row | {"missing": dict.fromkeys(("psnr", "ssim", "decode_per_s"), str(err)),
                      "note": f"encode only: {err}"}
    recon = torch.cat(recon).float().cpu()
    if recon.shape != images.shape:
        raise ValueError(f"{tokenizer.name}: decode gave images {tuple(recon.shape)} for inputs "
                         f"{tuple(images.shape)}; the benchmark compares them pixel by pixel")
    return row | {"psnr": float(psnr(images, recon).mean()), "ssim": float(ssim(images, recon).mean()),
                  "decode_per_s": len(images) / decode_s}


def bench_images(
    tokenizer: Tokenizer, label: str, sets: list[MediaSet], repeats: int = 3, batch_size: int = 8
) -> list[dict[str, Any]]:
    """Per set: the tokenizer's row, then one row per peer at its bits per pixel."""
    rows = []
    for media in sets:
        images = torch.cat([tokenizer.read_media(p) for p in media.files]).float().cpu()  # (N, 3, H, W)
        head = {"set": media.name, "files": len(media.files), "image_size": list(images.shape[-2:])}
        row = head | {"system": label} | tokenizer_row(tokenizer, images, repeats, batch_size)
        bpp = row["bits_per_pixel"]  # a peer once per set, image size and bpp (Report.add drops repeats)
        rows += [row] + [head | peer_row(peer, images, bpp) | {"peer_key": (media.name, *head["image_size"],
                                                                            peer, round(bpp, 6))}
                         for peer in PEERS]
    return rows
