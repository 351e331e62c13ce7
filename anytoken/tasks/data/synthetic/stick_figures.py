"""Rendered stick figures: articulated skeletons in random poses with exact COCO 17-keypoint annotations
(the drawing is made from them); deterministic by seed, from disjoint seed streams per split.

A figure faces the viewer (the person's left is on the image's right); left and right limbs have their own
colours, so they stay distinguishable in any pose. With probability ``occlusion`` a rectangle hides part
of the figure: the keypoints under it are labelled but hidden (``v = 1``), all others visible (``v = 2``).
Rendering takes about 0.1 ms, so datasets render lazily in ``__getitem__``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from anytoken.tokenizers.pose import COCO_KEYPOINTS, COCO_SKELETON

Split = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")
LEFT_COLOR, RIGHT_COLOR, CENTRE_COLOR = (255, 140, 0), (0, 200, 255), (235, 235, 235)
# bone lengths as fractions of the figure's height
_TORSO, _SHOULDER, _HIP, _NECK = 0.30, 0.10, 0.07, 0.10
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.15, 0.13, 0.22, 0.21
_HEAD_RADIUS = 0.065


@dataclass(frozen=True)
class StickFiguresConfig:
    """How figures are drawn."""

    image_size: int = 64  # side of the square images
    min_height: float = 0.55  # figure height as a fraction of the image side, lower bound
    max_height: float = 0.9  # ... upper bound
    occlusion: float = 0.25  # probability that a rectangle hides part of the figure
    clutter: int = 3  # random background lines per image (distractors)
    seed: int = 0  # base seed; splits and items derive theirs from it

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32, got {self.image_size}")
        if not 0.2 <= self.min_height <= self.max_height <= 0.95:
            raise ValueError(
                f"need 0.2 <= min_height <= max_height <= 0.95, got {self.min_height}, {self.max_height}"
            )
        if not 0 <= self.occlusion <= 1 or self.clutter < 0:
            raise ValueError(
                f"occlusion must be in [0, 1] and clutter >= 0, got {self.occlusion}, {self.clutter}"
            )


@dataclass(frozen=True)
class StickFigure:
    """One figure: keypoints ``[17, 3]`` ``(x, y, v)`` in pixels, its box ``(x, y, w, h)`` and its image."""

    image: Image.Image
    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        """The box area, standing in for COCO's segment area (the OKS scale)."""
        return self.bbox[2] * self.bbox[3]


def _rotate(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` from straight down (image y grows downwards), positive towards image right."""
    return np.array([math.sin(angle), math.cos(angle)])


def skeleton_keypoints(rng: np.random.Generator) -> np.ndarray:
    """Keypoints ``[17, 2]`` of a random pose of a unit-height figure with the hip centre at the origin."""
    kp = np.zeros((17, 2))
    lean = rng.normal(0, 0.2)
    up = -_rotate(lean)  # from hips to neck
    side = np.array([-up[1], up[0]])  # towards the image right (the person's left)
    neck = up * _TORSO
    kp[5], kp[6] = neck + side * _SHOULDER, neck - side * _SHOULDER  # left / right shoulder
    kp[11], kp[12] = side * _HIP, -side * _HIP  # left / right hip
    tilt = lean + rng.normal(0, 0.25)
    head_up, head_side = -_rotate(tilt), np.array([math.cos(tilt), math.sin(tilt)])
    head = neck + head_up * (_NECK + _HEAD_RADIUS)
    kp[0] = head - head_up * 0.01  # nose
    eyes = head + head_up * 0.02
    kp[1], kp[2] = eyes + head_side * 0.025, eyes - head_side * 0.025
    kp[3], kp[4] = head + head_side * _HEAD_RADIUS, head - head_side * _HEAD_RADIUS  # ears
    for sign, (shoulder, elbow, wrist) in ((1, (5, 7, 9)), (-1, (6, 8, 10))):
        upper = lean + sign * rng.uniform(-0.3, 2.8)  # arm raised outwards from hanging down
        lower = upper + sign * rng.uniform(-0.3, 2.3)
        kp[elbow] = kp[shoulder] + _rotate(upper) * _UPPER_ARM
        kp[wrist] = kp[elbow] + _rotate(lower) * _FOREARM
    for sign, (hip, knee, ankle) in ((1, (11, 13, 15)), (-1, (12, 14, 16))):
        thigh = sign * rng.uniform(-0.25, 1.0)
        shin = thigh - sign * rng.uniform(0.0, 1.2) * rng.choice([0.0, 1.0], p=[0.3, 0.7])
        kp[knee] = kp[hip] + _rotate(thigh) * _THIGH
        kp[ankle] = kp[knee] + _rotate(shin) * _SHIN
    return kp


def _limb_color(a: int, b: int) -> tuple[int, int, int]:
    """Left keypoints have odd indices and right ones even (the nose is 0)."""
    if a % 2 == b % 2 and a > 0 and b > 0:
        return LEFT_COLOR if a % 2 else RIGHT_COLOR
    return CENTRE_COLOR


def make_figure(rng: np.random.Generator, config: StickFiguresConfig) -> StickFigure:
    """Draw one random figure (pose, size, place, background, occluder) from ``rng``."""
    S = config.image_size
    unit = skeleton_keypoints(rng)  # (17, 2)
    height = rng.uniform(config.min_height, config.max_height) * S
    xy = unit * height
    pad = _HEAD_RADIUS * height + 2
    lo, hi = xy.min(0) - pad, xy.max(0) + pad
    scale = min(1.0, (S - 1) / float((hi - lo).max()))  # shrink poses that would not fit
    xy, lo, hi = xy * scale, lo * scale, hi * scale
    room = np.maximum(S - 1 - hi, -lo)  # equal to -lo when the figure spans the image (up to rounding)
    offset = np.array([rng.uniform(-lo[0], room[0]), rng.uniform(-lo[1], room[1])])
    xy = xy + offset
    background = tuple(int(c) for c in rng.integers(0, 70, 3))
    image = Image.new("RGB", (S, S), background)
    draw = ImageDraw.Draw(image)
    for _ in range(config.clutter):
        line = rng.uniform(0, S, 4).tolist()
        draw.line(line, fill=tuple(int(c) for c in rng.integers(60, 140, 3)), width=1)
    width = max(1, round(S / 40 * scale * height / (0.7 * S)))
    for a, b in COCO_SKELETON[:12]:  # limbs and torso; the face is drawn as a head below
        draw.line([tuple(xy[a]), tuple(xy[b])], fill=_limb_color(a, b), width=width)
    head = (xy[3] + xy[4]) / 2
    r = _HEAD_RADIUS * height * scale
    draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], outline=CENTRE_COLOR, width=width)
    for i, color in enumerate(((255, 60, 60), LEFT_COLOR, RIGHT_COLOR, LEFT_COLOR, RIGHT_COLOR)):
        draw.point(tuple(np.round(xy[i])), fill=color)
    visible = np.full(17, 2.0)
    if rng.uniform() < config.occlusion:
        side = rng.uniform(0.2, 0.4) * S
        corner = xy[rng.integers(17)] - rng.uniform(0, side, 2)
        box = [corner[0], corner[1], corner[0] + side, corner[1] + side]
        draw.rectangle(box, fill=tuple(int(c) for c in rng.integers(80, 200, 3)))
        inside = (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])
        visible[inside] = 1.0
    keypoints = np.concatenate([xy, visible[:, None]], axis=1)  # (17, 3)
    x0, x1 = np.clip(lo + offset, 0, S), np.clip(hi + offset, 0, S)
    (x, y), (w, h) = x0.tolist(), (x1 - x0).tolist()
    return StickFigure(image, keypoints, (x, y, w, h))


def figure_seed(split: str, index: int, base_seed: int) -> int:
    """The seed of figure ``index`` of ``split``: disjoint streams per split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return zlib.crc32(f"{base_seed}/{split}/{index}".encode())


class StickFiguresDataset(Dataset):
    """``n`` figures of one split; items are dicts like ``CocoKeypointsDataset``'s.

    Items: ``image`` (PIL RGB), ``keypoints`` ``[17, 3]`` float64 pixels, ``bbox`` ``(x, y, w, h)``,
    ``area``, ``image_id`` (the index).
    """

    keypoint_names = COCO_KEYPOINTS
    skeleton = COCO_SKELETON

    def __init__(self, split: Split, n: int, config: StickFiguresConfig | None = None) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.split, self.n, self.config = split, n, config or StickFiguresConfig()
        figure_seed(split, 0, self.config.seed)  # validates the split name

    def __len__(self) -> int:
        return self.n

    def figure(self, index: int) -> StickFigure:
        if not 0 <= index < self.n:
            raise IndexError(f"figure {index} out of range for {self.n} figures")
        rng = np.random.default_rng(figure_seed(self.split, index, self.config.seed))
        return make_figure(rng, self.config)

    def __getitem__(self, index: int) -> dict[str, Any]:
        fig = self.figure(index)
        return {"image": fig.image, "keypoints": fig.keypoints, "bbox": fig.bbox, "area": fig.area,
                "image_id": index}
