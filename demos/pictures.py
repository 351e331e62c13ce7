"""What the apps draw: token grids, skeletons and trajectories (on a canvas or over a picture), log-mel
spectrograms, and PNG files for Gradio's image components. PIL and numpy only (no plotting library)."""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

MAX_GRID_CELLS = 4096  # token grids larger than this are shown cropped
MAX_COLUMNS = 512  # ... and wider ones too (a mu-law stream has a column per sample)
WIDE_GRID = 48  # grids wider than this get narrow cells without the ids written in
Point = tuple[float, float] | None  # (x, y) in [0, 1] of the picture; None: not drawn
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
# anchors of the spectrogram colour map (dark blue -> purple -> orange -> light yellow, like "magma")
HEAT = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]])


def save_png(image: Image.Image, folder: Path) -> str:
    """Write ``image`` to a new PNG file in ``folder`` (Gradio shows files) and return its path."""
    path = Path(tempfile.mkstemp(suffix=".png", dir=folder)[1])
    image.save(path)
    return str(path)


def tensor_image(x: torch.Tensor, size: int | None = None) -> Image.Image:
    """An image tensor ``[3, H, W]`` (or ``[1, 3, H, W]``) in ``[0, 1]`` as a PIL image, resized (nearest
    neighbour: tokens stay visible as blocks) to ``size`` pixels square when given."""
    x = x[0] if x.dim() == 4 else x
    array = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    image = Image.fromarray(array)
    return image if size is None else image.resize((size, size), Image.NEAREST)


def token_grid(ids: torch.Tensor, cell: int = 22) -> Image.Image:
    """Ids as a grid of coloured cells (colour from the id, the id written inside when it fits).

    ``[h, w]`` grids keep their layout (an audio codec's levels x frames); ``[B, h, w]`` shows the first
    item; anything else is flattened into rows of 16. At most ``MAX_GRID_CELLS`` cells are drawn (the first
    ``MAX_COLUMNS`` columns of a wide grid, the first rows of a tall one); grids wider than ``WIDE_GRID``
    get narrow cells, and a single such row is wrapped into rows of 64.
    """
    ids = ids.detach().cpu().long()
    while ids.dim() > 2:
        ids = ids[0]
    if ids.dim() < 2:
        flat = ids.reshape(-1)[:MAX_GRID_CELLS]
        width = min(16, max(1, flat.numel()))
        ids = torch.nn.functional.pad(flat, (0, -flat.numel() % width), value=-1).view(-1, width)
    ids = ids[:, :MAX_COLUMNS]
    if ids.shape[0] == 1 and ids.shape[1] > WIDE_GRID:  # one long stream (mu-law): wrapped into rows of 64
        ids = torch.nn.functional.pad(ids[0], (0, -ids.shape[1] % 64), value=-1).view(-1, 64)
    ids = ids[: MAX_GRID_CELLS // max(ids.shape[1], 1)]
    h, w = ids.shape
    cell_w = cell if w <= WIDE_GRID else max(2, 1024 // w)
    image = Image.new("RGB", (max(w, 1) * cell_w, max(h, 1) * cell), "white")
    draw = ImageDraw.Draw(image)
    for (r, c), value in zip(((r, c) for r in range(h) for c in range(w)), ids.reshape(-1).tolist()):
        if value < 0:
            continue
        hue = zlib.crc32(str(value).encode())
        color = (80 + hue % 160, 80 + (hue >> 8) % 160, 80 + (hue >> 16) % 160)
        draw.rectangle((c * cell_w, r * cell, (c + 1) * cell_w - 1, (r + 1) * cell - 1), fill=color)
        if value < 1000 and cell_w == cell:
            draw.text((c * cell_w + 2, r * cell + 5), str(value), fill="black")
    return image


def _polylines(image: Image.Image, lines: Sequence[Sequence[Point]], edges: Sequence[tuple[int, int]],
               margin: int, width: int, colors: Sequence[tuple[int, int, int]]) -> Image.Image:
    """Draw polylines of ``(x, y)`` points in ``[0, 1]`` (joined by ``edges`` when given) on ``image``, in
    place, line ``k`` in ``colors[k % len(colors)]``; returns ``image``."""
    draw = ImageDraw.Draw(image)
    scale = image.width - 2 * margin
    for k, line in enumerate(lines):
        xy = [None if p is None else (margin + p[0] * scale, margin + p[1] * scale) for p in line]
        color = colors[k % len(colors)]
        for a, b in edges or list(zip(range(len(xy) - 1), range(1, len(xy)))):
            if max(a, b) < len(xy) and xy[a] is not None and xy[b] is not None:
                draw.line([xy[a], xy[b]], fill=color, width=width)
        r = width + 1
        for p in filter(None, xy):
            draw.ellipse((p[0] - r, p[1] - r, p[0] + r, p[1] + r), fill=color)
    return image


def draw_lines(lines: Sequence[Sequence[Point]], edges: Sequence[tuple[int, int]] = (),
               background: Image.Image | None = None, size: int = 256, width: int = 2,
               colors: Sequence[tuple[int, int, int]] = PALETTE) -> Image.Image:
    """Polylines of ``(x, y)`` points in ``[0, 1]`` (a skeleton when ``edges`` is given), each in its own
    colour, over ``background`` (resized to ``size``) or on a white canvas with a margin."""
    if background is not None:
        return _polylines(background.convert("RGB").resize((size, size), Image.NEAREST), lines, edges, 0,
                          width, colors)
    return _polylines(Image.new("RGB", (size, size), "white"), lines, edges, 8, width, colors)


def draw_pose(keypoints: torch.Tensor, edges: Sequence[tuple[int, int]],
              background: Image.Image | None = None, size: int = 256) -> Image.Image:
    """The visible keypoints ``[K, 3]`` ``(x, y, v)`` (normalised to the picture) joined by ``edges``, over
    ``background`` when given."""
    line = [(float(x), float(y)) if v > 0 else None for x, y, v in torch.as_tensor(keypoints).tolist()]
    return draw_lines([line], edges, background, size, width=3, colors=[(255, 40, 40)])


def fit_unit(*paths: torch.Tensor) -> list[torch.Tensor]:
    """Positions ``[..., 2]`` mapped into ``[0, 1]`` by one common scale (both axes alike, the narrower
    centred), so paths drawn from several tensors (history, futures) stay aligned."""
    paths = tuple(torch.as_tensor(p, dtype=torch.float64) for p in paths)
    flat = torch.cat([p.reshape(-1, 2) for p in paths])
    lo, hi = flat.min(0).values, flat.max(0).values
    span = (hi - lo).max().clamp(min=1e-9)
    shift = (span - (hi - lo)) / 2
    return [(p - lo + shift) / span for p in paths]


def draw_forecast(history: torch.Tensor, futures: torch.Tensor | None = None,
                  truth: torch.Tensor | None = None, size: int = 320) -> Image.Image:
    """Observed paths ``[A, H, 2]`` (thick, one colour per agent), sampled futures ``[k, A, F, 2]`` (thin,
    in the agent's colour) and the true future ``[A, F, 2]`` (grey), futures continuing from the last
    observed position."""
    given = [history] + [t for t in (futures, truth) if t is not None]
    unit = dict(zip(["history", *(n for n, t in (("futures", futures), ("truth", truth)) if t is not None)],
                    fit_unit(*given)))
    last = unit["history"][:, -1:]  # (A, 1, 2)
    image = Image.new("RGB", (size, size), "white")
    if truth is not None:
        lines = [torch.cat([last[a], path]).tolist() for a, path in enumerate(unit["truth"])]
        _polylines(image, lines, (), 8, 1, [(160, 160, 160)])
    for future in unit.get("futures", []):  # (A, F, 2) each
        _polylines(image, [torch.cat([last[a], path]).tolist() for a, path in enumerate(future)], (), 8, 1,
                   PALETTE)
    return _polylines(image, unit["history"].tolist(), (), 8, 3, PALETTE)


@lru_cache(maxsize=4)
def _mel(sample_rate: int):  # noqa: ANN202 - a MultiScaleMel at one 512-sample scale
    from anytoken.tokenizers.audio_losses import MultiScaleMel

    return MultiScaleMel(sample_rate, scales=(512,))


def spectrogram(wave: torch.Tensor, sample_rate: int, title: str = "", height: int = 160,
                floor: float = -5.0) -> Image.Image:
    """The log-mel spectrogram of the first channel of ``wave`` ``[..., T]`` (the codec loss's mel bands,
    a 512-sample window) as a picture: time to the right, frequency up, ``floor`` to the loudest (log10
    power) mapped to dark -> light, ``title`` written in the corner."""
    wave = torch.as_tensor(wave).detach().float().cpu()
    with torch.no_grad():
        mel = _mel(sample_rate).log_mels(wave.reshape(-1, wave.shape[-1])[:1])[0][0]  # (frames, mels)
    mel = mel.t().flip(0).numpy()  # (mels, frames), low bands at the bottom
    top = max(float(mel.max()), floor + 1)
    level = np.clip((mel - floor) / (top - floor), 0, 1) * (len(HEAT) - 1)  # (mels, frames) in [0, 5]
    low = np.floor(level).astype(int).clip(0, len(HEAT) - 2)
    rgb = HEAT[low] + (HEAT[low + 1] - HEAT[low]) * (level - low)[..., None]
    width = min(720, max(240, 2 * mel.shape[1]))
    image = Image.fromarray(rgb.round().astype(np.uint8)).resize((width, height))
    if title:
        ImageDraw.Draw(image).text((6, 4), title, fill="white")
    return image


def side_by_side(images: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    """Images in one row on white, tops aligned."""
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1),
                            max(i.height for i in images)), "white")
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out
