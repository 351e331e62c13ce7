"""Procedural scenes: coloured shapes on a 3x3 grid (one object per cell at most), with a canonical caption
and VQA-style questions; deterministic by seed.

Splits. ``HELDOUT_PAIRS`` (8 of the 32 colour-shape pairs) never occur in train/val/test scenes, nor in
their yes/no questions; every ``heldout`` and ``heldout_val`` scene holds one. ``heldout_val`` (contents
of the val bucket) is where settings for unseen pairs are chosen; ``heldout`` (the other contents) is
reported once, so no held-out scene that chose a setting also scores it. Train, val and test are split
by content: a hash
of the caption gives each content (the objects, ignoring jitter) to one split (8/1/1), so no val or test
scene has the objects of a train scene. Within a split a content may repeat with another jitter: there are
only 432 one-object contents, but about 93,000 two-object ones. Rendering a 64px scene takes about 20 us on
one CPU core, so the datasets render lazily in ``__getitem__``.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, ImageDraw
from torch.utils.data import Dataset

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 190, 50),
    "blue": (40, 80, 255),
    "yellow": (255, 225, 25),
    "purple": (160, 40, 220),
    "orange": (255, 130, 0),
    "cyan": (0, 220, 220),
    "white": (255, 255, 255),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = (  # the 3x3 grid, row-major
    *("top left", "top", "top right"),
    *("left", "center", "right"),
    *("bottom left", "bottom", "bottom right"),
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "heldout", "heldout_val")
Split = Literal["train", "val", "test", "heldout", "heldout_val"]
QuestionType = Literal["color", "shape", "count", "position", "yes/no"]

# Never seen in train/val/test: each colour once and each shape twice, so in training every colour still
# appears with 3 shapes and every shape with 6 colours.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "diamond"),
    ("purple", "square"), ("orange", "triangle"), ("cyan", "diamond"), ("white", "circle"),
})
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (color, shape) for color in COLORS for shape in SHAPES if (color, shape) not in HELDOUT_PAIRS
)
MIN_IMAGE_SIZE = 24

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PREPOSITIONS = {"left": "on", "right": "on", "center": "in"}  # every other cell takes "at"
# Half the width of a shape as a fraction of the cell side. Any large shape has at least twice the area
# of any small one (a small square 0.16, a large diamond or triangle 0.32 cell^2), jitter only moves.
_HALF_EXTENT = {"small": 0.2, "large": 0.4}
_MARGIN = 0.05  # fraction of the cell kept free at its border, so neighbouring shapes never touch
_CONTENT_BUCKETS = ("train",) * 8 + ("val", "test")


def _check_choice(kind: str, value: object, choices: tuple[str, ...] | dict[str, Any]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {list(choices)}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene, e.g. ``SceneObject("circle", "red", "large", "top left")``."""

    shape: str  # one of SHAPES
    color: str  # one of COLORS
    size: str  # one of SIZES
    cell: str  # one of POSITIONS

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("color", self.color, COLORS)
        _check_choice("size", self.size, SIZES)
        _check_choice("cell", self.cell, POSITIONS)

    def describe(self) -> str:
        """The caption phrase of this object, e.g. "a large red circle at the top left"."""
        preposition = _PREPOSITIONS.get(self.cell, "at")
        return f"{_article(self.size)} {self.size} {self.color} {self.shape} {preposition} the {self.cell}"


@dataclass(frozen=True)
class QA:
    """One question about a scene with its single correct answer."""

    question: str
    answer: str
    question_type: QuestionType


@dataclass(frozen=True)
class Scene:
    """A set of objects in distinct cells; ``objects`` is stored in cell order (row-major)."""

    objects: tuple[SceneObject, ...]
    seed: int = 0  # drives the jitter of render() and the choices made by questions()

    def __post_init__(self) -> None:
        if not self.objects or not all(isinstance(obj, SceneObject) for obj in self.objects):
            raise ValueError("a scene needs a non-empty sequence of SceneObject")
        cells = [obj.cell for obj in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"objects of a scene must occupy distinct cells, got {cells}")
        ordered = tuple(sorted(self.objects, key=lambda obj: POSITIONS.index(obj.cell)))
        object.__setattr__(self, "objects", ordered)

    def render(self, image_size: int = 64) -> Image.Image:
        """The scene drawn on a black RGB square of side ``image_size`` (>= ``MIN_IMAGE_SIZE``); the same
        scene always gives the same pixels."""
        if image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
        image = Image.new("RGB", (image_size, image_size))
        draw = ImageDraw.Draw(image)
        rng = random.Random(self.seed)
        cell = image_size / 3
        for obj in self.objects:
            row, col = divmod(POSITIONS.index(obj.cell), 3)
            half = _HALF_EXTENT[obj.size] * cell
            slack = (0.5 - _MARGIN) * cell - half  # how far the centre may move and stay in the cell
            x = (col + 0.5) * cell + rng.uniform(-slack, slack)
            y = (row + 0.5) * cell + rng.uniform(-slack, slack)
            _draw_shape(draw, obj.shape, x, y, half, COLORS[obj.color])
        return image

    def caption(self) -> str:
        """The canonical caption: objects in cell order, e.g. "a small red circle at the top and a ..."."""
        phrases = [obj.describe() for obj in self.objects]
        if len(phrases) == 1:
            return phrases[0]
        return ", ".join(phrases[:-1]) + " and " + phrases[-1]

    def questions(self) -> list[QA]:
        """Questions with unambiguous answers, in a fixed order of types.

        color/shape/position questions are asked only where the shape, colour or (colour, shape) they
        name is unique in the scene. Count questions ask for all objects, for each shape present and
        for one absent shape. Yes/no questions are balanced: one "yes" per distinct (colour, shape)
        present and as many "no", preferring absent pairs that share a colour or shape with a present
        object (so answering needs attribute binding); held-out pairs are never asked about as "no".
        """
        objs = self.objects
        rng = random.Random(f"questions/{self.seed}")
        shapes = Counter(o.shape for o in objs)
        colors = Counter(o.color for o in objs)
        pairs = Counter((o.color, o.shape) for o in objs)
        qas = [QA(f"what color is the {o.shape}?", o.color, "color") for o in objs if shapes[o.shape] == 1]
        qas += [
            QA(f"what shape is the {o.color} object?", o.shape, "shape") for o in objs if colors[o.color] == 1
        ]
        qas.append(QA("how many objects are there?", NUMBER_WORDS[len(objs)], "count"))
        absent = [shape for shape in SHAPES if shape not in shapes]
        for shape in [s for s in SHAPES if s in shapes] + rng.sample(absent, min(1, len(absent))):
            qas.append(QA(f"how many {shape}s are there?", NUMBER_WORDS[shapes[shape]], "count"))
        qas += [
            QA(f"where is the {o.color} {o.shape}?", o.cell, "position")
            for o in objs
            if pairs[(o.color, o.shape)] == 1
        ]
        qas += [QA(f"is there {_article(c)} {c} {s}?", "yes", "yes/no") for c, s in pairs]
        qas += [QA(f"is there {_article(c)} {c} {s}?", "no", "yes/no") for c, s in _negatives(pairs, rng)]
        return qas


def _negatives(present: Counter[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """One absent, non-held-out pair per present pair, sharing its colour or shape where possible."""
    chosen: list[tuple[str, str]] = []
    for color, shape in present:
        allowed = [p for p in TRAIN_PAIRS if p not in present and p not in chosen]
        near = [p for p in allowed if p[0] == color or p[1] == shape]
        chosen.append(rng.choice(near or allowed))
    return chosen


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, half: float, fill: tuple[int, int, int]
) -> None:
    box = (x - half, y - half, x + half, y + half)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x, y - half), (x + half, y + half), (x - half, y + half)], fill=fill)
    else:  # diamond
        draw.polygon([(x, y - half), (x + half, y), (x, y + half), (x - half, y)], fill=fill)


@dataclass
class ScenesConfig:
    """How scenes are generated and rendered."""

    image_size: int = 64  # side of the square RGB images in pixels (at least MIN_IMAGE_SIZE)
    min_objects: int = 1  # fewest objects in a scene (at least 1)
    max_objects: int = 2  # most objects in a scene (at most 9, one per grid cell)
    seed: int = 0  # base seed; each split draws from its own random stream derived from it

    def __post_init__(self) -> None:
        for name in ("image_size", "min_objects", "max_objects", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"ScenesConfig.{name} must be an int, got {value!r}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"ScenesConfig.image_size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= len(POSITIONS):
            raise ValueError(
                f"ScenesConfig needs 1 <= min_objects <= max_objects <= {len(POSITIONS)}, "
                f"got min_objects={self.min_objects}, max_objects={self.max_objects}"
            )


def content_split(scene: Scene) -> str:
    """The split ("train", "val" or "test") that owns this scene's content, from a hash of its caption."""
    return _CONTENT_BUCKETS[zlib.crc32(scene.caption().encode()) % len(_CONTENT_BUCKETS)]


def make_scenes(split: Split, num: int, config: ScenesConfig | None = None) -> list[Scene]:
    """``num`` scenes of ``split``, deterministically from ``(config.seed, split)``; the first ``k`` of
    ``make_scenes(split, n)`` equal ``make_scenes(split, k)``."""
    config = config or ScenesConfig()
    _check_choice("split", split, SPLITS)
    if not isinstance(num, int) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    rng = random.Random(f"anytoken-scenes/{config.seed}/{split}")
    heldout = split in ("heldout", "heldout_val")
    scenes: list[Scene] = []
    while len(scenes) < num:
        scene = _sample_scene(rng, config, heldout=heldout)
        owner = content_split(scene)
        if owner == split or (heldout and (owner == "val") == (split == "heldout_val")):
            scenes.append(scene)
    return scenes


def _sample_scene(rng: random.Random, config: ScenesConfig, heldout: bool) -> Scene:
    count = rng.randint(config.min_objects, config.max_objects)
    cells = rng.sample(POSITIONS, count)
    if heldout:  # one forced held-out pair, the others drawn from all 32 pairs
        pairs = [(color, shape) for color in COLORS for shape in SHAPES]
        chosen = [rng.choice(pairs) for _ in range(count)]
        chosen[rng.randrange(count)] = rng.choice(sorted(HELDOUT_PAIRS))
    else:
        chosen = [rng.choice(TRAIN_PAIRS) for _ in range(count)]
    objects = tuple(
        SceneObject(shape, color, rng.choice(SIZES), cell) for (color, shape), cell in zip(chosen, cells)
    )
    return Scene(objects, seed=rng.getrandbits(32))


class ScenesCaptionDataset(Dataset):
    """Scenes with their caption: items ``{"image"`` (PIL RGB), ``"caption", "references", "image_id"}``."""

    def __init__(self, split: Split, num: int, config: ScenesConfig | None = None) -> None:
        self.split = split
        self.config = config or ScenesConfig()
        self.scenes = make_scenes(split, num, self.config)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scenes[index]
        caption = scene.caption()
        return {
            "image": scene.render(self.config.image_size),
            "caption": caption,
            "references": [caption],
            "image_id": f"scenes-{self.split}-{index}",
        }


class ScenesVQADataset(ScenesCaptionDataset):
    """Every question of ``num`` scenes: items ``{"image", "question", "answer", "answers",
    "question_type", "image_id"}``; ``answers`` holds 10 copies of the answer, as VQA v2 has 10 human
    answers, and ``image_id`` is ``ScenesCaptionDataset``'s.
    """

    def __init__(self, split: Split, num: int, config: ScenesConfig | None = None) -> None:
        super().__init__(split, num, config)
        self.items = [(i, qa) for i, scene in enumerate(self.scenes) for qa in scene.questions()]
        self._rendered: tuple[int, Image.Image] | None = None  # the last scene drawn (its questions follow)

    def image(self, scene_index: int) -> Image.Image:
        """Scene ``scene_index`` drawn (kept while its questions are read, so a scene is drawn once)."""
        if self._rendered is None or self._rendered[0] != scene_index:
            self._rendered = (scene_index, self.scenes[scene_index].render(self.config.image_size))
        return self._rendered[1]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene_index, qa = self.items[index]
        return {
            "image": self.image(scene_index),
            "question": qa.question,
            "answer": qa.answer,
            "answers": [qa.answer] * 10,
            "question_type": qa.question_type,
            "image_id": f"scenes-{self.split}-{scene_index}",
        }
