"""COCO captions read from their own JSON format (e.g. ``captions_val2014.json``): ``{"images": [{"id",
"file_name", ...}], "annotations": [{"image_id", "caption", ...}]}``. Everything is validated when the
dataset is built, so a wrong path or a broken file fails at once, not in the middle of an epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from anytoken.tokenizers.image_io import load_image


class CocoCaptionsDataset(Dataset):
    """Images with their reference captions: items ``{"image", "caption", "references", "image_id"}``.

    ``image`` is a PIL RGB image loaded by ``load_image``; ``references`` are all captions of the image
    in file order, stripped of surrounding whitespace; ``caption`` is the first of them (or, with
    ``one_item_per_caption``, the item's own caption); ``image_id`` is ``str(id)``. Items follow the
    order of ``"images"``; images without any caption are left out. The attribute ``references``
    (image_id -> captions) is ready for ``caption_metrics``.

    Args:
        annotations: the captions JSON file.
        images_dir: the folder the ``file_name`` entries are relative to.
        one_item_per_caption: one item per (image, caption) instead of one per image, for training.
    """

    def __init__(self, annotations: str | Path, images_dir: str | Path,
                 one_item_per_caption: bool = False) -> None:
        annotations = Path(annotations)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise ValueError(f"images_dir is not a directory: {self.images_dir}")
        data = read_json(annotations, "COCO annotations")
        if not isinstance(data, dict):
            raise ValueError(f"{annotations}: expected a JSON object with 'images' and 'annotations'")
        require(data, ("images", "annotations"), str(annotations))
        for key in ("images", "annotations"):
            if not isinstance(data[key], list):
                raise ValueError(f"{annotations}: {key!r} must be a list, got {type(data[key]).__name__}")
        if not data["annotations"]:
            raise ValueError(f"{annotations}: 'annotations' is empty")
        files = _index_images(data["images"], annotations)
        self.references = _group_captions(data["annotations"], files, annotations)
        self.files = {image_id: files[image_id] for image_id in files if image_id in self.references}
        missing = [name for name in self.files.values() if not (self.images_dir / name).is_file()]
        if missing:
            raise ValueError(f"{len(missing)} image file(s) listed in {annotations} are not in "
                             f"{self.images_dir}, e.g. {missing[:3]}")
        self.items = [(image_id, index) for image_id in self.files
                      for index in range(len(self.references[image_id]) if one_item_per_caption else 1)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id, caption_index = self.items[index]
        references = self.references[image_id]
        return {
            "image": load_image(self.images_dir / self.files[image_id]),
            "caption": references[caption_index],
            "references": list(references),
            "image_id": image_id,
        }


def read_json(path: Path, what: str) -> Any:
    """The JSON content of ``path``; ``ValueError`` naming ``what`` when it is missing or not JSON."""
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def require(entry: object, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """``entry`` when it is a JSON object holding ``keys``; else ``ValueError`` naming ``where``."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(entry).__name__}")
    for key in keys:
        if key not in entry:
            raise ValueError(f"{where} is missing key {key!r}")
    return entry


def _index_images(images: list[Any], path: Path) -> dict[str, str]:
    """Maps str(image id) to file_name, in file order."""
    files: dict[str, str] = {}
    for i, entry in enumerate(images):
        entry = require(entry, ("id", "file_name"), f"{path}: images[{i}]")
        image_id = str(entry["id"])
        if image_id in files:
            raise ValueError(f"{path}: images[{i}] repeats image id {entry['id']!r}")
        if not isinstance(entry["file_name"], str) or not entry["file_name"]:
            raise ValueError(f"{path}: images[{i}] has an invalid file_name {entry['file_name']!r}")
        files[image_id] = entry["file_name"]
    return files


def _group_captions(annotations: list[Any], files: dict[str, str], path: Path) -> dict[str, list[str]]:
    """Maps str(image id) to its captions, in file order."""
    references: dict[str, list[str]] = {}
    for i, entry in enumerate(annotations):
        entry = require(entry, ("image_id", "caption"), f"{path}: annotations[{i}]")
        image_id = str(entry["image_id"])
        if image_id not in files:
            raise ValueError(
                f"{path}: annotations[{i}] refers to image_id {entry['image_id']!r}, which is not in 'images'"
            )
        caption = entry["caption"]
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{path}: annotations[{i}] has an empty or non-string caption {caption!r}")
        references.setdefault(image_id, []).append(caption.strip())
    return references

