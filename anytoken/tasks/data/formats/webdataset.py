"""Image-caption pairs as WebDataset tar shards, the CC3M/LAION layout (img2dataset writes it)::

    FOLDER/00000.tar: 000000000.jpg 000000000.txt [000000000.json] 000000001.jpg 000000001.txt ...

A sample is the members sharing a key (the member path up to the first dot of its file name): an image
(``.jpg``, ``.jpeg``, ``.png`` or ``.webp``) and its caption (``.txt``, UTF-8); other members (``.json``
metadata) are ignored. Shards are read in name order; captions are read when the dataset is built, images
when an item is asked for (random access by byte offset, so any sampler shuffles samples).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from anytoken.tasks.data.tar_members import MemberReader, tar_members
from anytoken.tokenizers.image_io import decode_image

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
CAPTION_SUFFIX = "txt"


def split_key(name: str) -> tuple[str, str]:
    """WebDataset's ``(key, suffix)`` of a member name: ``"a/b.c.jpg"`` -> ``("a/b", "c.jpg")``."""
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


class ImageTextShards(Dataset):
    """Image-caption pairs of WebDataset tar shards: items ``{"image", "caption", "references",
    "image_id"}`` (a PIL RGB image, its caption stripped, ``[caption]``, and ``SHARD/KEY``).

    Args:
        root: a folder of ``*.tar`` shards, or one shard.
        image_size: the side images are brought to (lets JPEGs decode at a reduced scale).
    """

    def __init__(self, root: str | Path, image_size: int | None = None) -> None:
        root = Path(root)
        files = sorted(root.glob("*.tar")) if root.is_dir() else [root] if root.is_file() else []
        if not files:
            raise ValueError(f"no WebDataset tar shards (*.tar) at {root}")
        self.reader = MemberReader(files[0].parent)
        self.image_size = image_size
        self.samples: list[tuple[str, str, int, int]] = []  # (shard, key, image offset, image size)
        self.captions: list[str] = []
        for path in files:
            for key, (offset, size), caption in _pairs(path, self.reader):
                self.samples.append((path.name, key, offset, size))
                self.captions.append(caption)
        if not self.samples:
            raise ValueError(f"no image-caption pairs (KEY.jpg + KEY.txt) in the tar shards at {root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, key, offset, size = self.samples[index]
        image = decode_image(self.reader.read(shard, offset, size), f"{shard}:{key}", self.image_size)
        caption = self.captions[index]
        return {"image": image, "caption": caption, "references": [caption], "image_id": f"{shard}/{key}"}


def _pairs(path: Path, reader: MemberReader) -> list[tuple[str, tuple[int, int], str]]:
    """``(key, (image offset, size), caption)`` of each sample of one shard; ``ValueError`` for a sample
    with an image but no caption, a caption but no image, or an empty or non-UTF-8 caption."""
    images: dict[str, tuple[int, int]] = {}
    captions: dict[str, tuple[int, int]] = {}
    for name, offset, size in tar_members(path):
        key, suffix = split_key(name)
        if suffix in IMAGE_SUFFIXES:
            images[key] = (offset, size)
        elif suffix == CAPTION_SUFFIX:
            captions[key] = (offset, size)
    lone = sorted(set(images) ^ set(captions))
    if lone:
        lacks = "a caption" if lone[0] in images else "an image"
        raise ValueError(f"{path}: sample {lone[0]!r} lacks {lacks} ({len(lone)} incomplete sample(s))")
    out = []
    for key in images:
        try:
            caption = reader.read(path.name, *captions[key]).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: caption {key}.txt is not UTF-8 text") from None
        if not caption:
            raise ValueError(f"{path}: caption {key}.txt is empty")
        out.append((key, images[key], caption))
    return out

