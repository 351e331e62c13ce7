"""Judging generated scene images: a deterministic reader of one-object scenes (``judge_scene``: colour
from the pixels, shape from the fill and the top/bottom mass, size from the extent, cell from the centre)
and how well a drawing matches its prompt's object."""

from __future__ import annotations

import torch

from anytoken.tasks.data.synthetic.scenes import COLORS, POSITIONS

ATTRIBUTES = ("color", "shape", "size", "cell")
_PALETTE = torch.tensor(list(COLORS.values()), dtype=torch.float32) / 255  # (8, 3)


def judge_scene(image: torch.Tensor, threshold: float = 0.3) -> dict[str, str] | None:
    """Read the one object of a scene image ``[3, S, S]`` in ``[0, 1]`` (black background).

    Returns:
        ``{"color", "shape", "size", "cell"}``, or None when no object is visible.
    """
    S = image.shape[-1]
    fg = image.amax(0) > threshold  # (S, S)
    if int(fg.sum()) < 4:
        return None
    ys, xs = fg.nonzero(as_tuple=True)
    y0, y1 = int(ys.float().quantile(0.01)), int(ys.float().quantile(0.99))
    x0, x1 = int(xs.float().quantile(0.01)), int(xs.float().quantile(0.99))
    box = fg[y0 : y1 + 1, x0 : x1 + 1].float()
    h, w = box.shape
    fill = float(box.mean())
    top, bottom = float(box[: h // 2].sum()), float(box[h - h // 2 :].sum())
    if top < 0.6 * bottom:
        shape = "triangle"
    else:
        shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "diamond"
    colour = image[:, fg].mean(1)  # (3,)
    color = list(COLORS)[int((_PALETTE - colour).pow(2).sum(1).argmin())]
    cell = S / 3
    size = "large" if max(h, w) > 0.6 * cell else "small"
    row, col = min(int((y0 + y1 + 1) / 2 // cell), 2), min(int((x0 + x1 + 1) / 2 // cell), 2)
    return {"color": color, "shape": shape, "size": size, "cell": POSITIONS[3 * row + col]}


def match(judged: dict[str, str] | None, obj: dict[str, str]) -> dict[str, float]:
    """1.0/0.0 per attribute (and ``all``) of a judged image against the prompt's object (as a dict)."""
    hits = {a: float(judged is not None and judged[a] == obj[a]) for a in ATTRIBUTES}
    return hits | {"all": float(all(hits.values()))}
