"""The COCO keypoints JSON format: read and write annotation files, write results, and a dataset of persons.

An annotation file holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories`` (the
person category with its ``keypoints`` names and 1-based ``skeleton``) and ``annotations`` (``id``,
``image_id``, ``category_id``, ``keypoints`` as a flat ``[x1, y1, v1, x2, ...]`` list, ``num_keypoints``,
``bbox`` ``[x, y, w, h]``, ``area``, ``iscrowd``). A results file is a list of ``{"image_id",
"category_id", "keypoints", "score"}``; pycocotools' ``COCOeval`` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from anytoken.atomic import atomic_path
from anytoken.tokenizers.image_io import load_image


@dataclass
class CocoKeypoints:
    """The content of a COCO keypoints file (one keypoint category); ``annotations`` keep COCO's fields,
    with ``keypoints`` as a float64 array ``[K, 3]``."""

    images: dict[int, dict[str, Any]]
    annotations: list[dict[str, Any]]
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()  # 0-based pairs
    category: dict[str, Any] = field(default_factory=lambda: {"id": 1, "name": "person"})


def _need(record: dict[str, Any], keys: Sequence[str], what: str, path: Path) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{path}: {what} lacks {missing}: {json.dumps(record)[:200]}")


def read_coco_keypoints(path: str | Path, category: str = "person") -> CocoKeypoints:
    """Read a COCO keypoints annotation file, keeping the annotations of ``category``; ``ValueError`` for
    missing fields, keypoint lists of another length than ``3 * K``, non-finite values, visibility flags
    other than 0/1/2, or unknown image ids."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a COCO file is a JSON object with images, annotations and categories")
    _need(data, ("images", "annotations", "categories"), "the file", path)
    cats = [c for c in data["categories"] if c.get("name") == category]
    if len(cats) != 1 or not cats[0].get("keypoints"):
        raise ValueError(f"{path}: need one category named {category!r} with keypoint names, "
                         f"got {data['categories']}")
    cat = cats[0]
    names = tuple(cat["keypoints"])
    K = len(names)
    skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in cat.get("skeleton", []))
    images = {}
    for image in data["images"]:
        _need(image, ("id", "file_name", "width", "height"), "an image", path)
        images[int(image["id"])] = image
    annotations = []
    for ann in data["annotations"]:
        if ann.get("category_id") != cat["id"]:
            continue
        _need(ann, ("id", "image_id", "keypoints", "bbox"), "an annotation", path)
        kp = np.asarray(ann["keypoints"], dtype=np.float64)
        if kp.ndim != 1 or kp.size != 3 * K:
            raise ValueError(f"{path}: annotation {ann['id']} has {kp.size} keypoint values, "
                             f"expected 3 x {K} keypoints")
        kp = kp.reshape(K, 3)
        if not np.isfinite(kp).all() or not np.isfinite(np.asarray(ann["bbox"], dtype=np.float64)).all():
            raise ValueError(f"{path}: annotation {ann['id']} has NaN or infinite keypoints or bbox")
        if not np.isin(kp[:, 2], (0, 1, 2)).all():
            raise ValueError(f"{path}: annotation {ann['id']} has visibility flags other than 0, 1, 2")
        if int(ann["image_id"]) not in images:
            raise ValueError(f"{path}: annotation {ann['id']} refers to unknown image {ann['image_id']}")
        bbox = [float(v) for v in ann["bbox"]]
        annotations.append(ann | {"keypoints": kp, "bbox": bbox, "num_keypoints": int((kp[:, 2] > 0).sum()),
                                  "area": float(ann.get("area", bbox[2] * bbox[3])),
                                  "iscrowd": int(ann.get("iscrowd", 0))})
    return CocoKeypoints(images, annotations, names, skeleton, {"id": cat["id"], "name": category})


def write_coco_keypoints(path: str | Path, data: CocoKeypoints) -> None:
    """Write ``data`` as a COCO keypoints annotation file (atomically; the skeleton 1-based, as COCO's)."""
    skeleton = [[a + 1, b + 1] for a, b in data.skeleton]
    category = data.category | {"keypoints": list(data.keypoint_names), "skeleton": skeleton,
                                "supercategory": data.category["name"]}
    annotations = []
    for ann in data.annotations:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        if kp.shape[0] != len(data.keypoint_names):
            raise ValueError(
                f"annotation {ann.get('id')} has {kp.shape[0]} keypoints, expected {len(data.keypoint_names)}"
            )
        labelled = int((kp[:, 2] > 0).sum())
        annotations.append(ann | {"keypoints": kp.flatten().tolist(), "num_keypoints": labelled,
                                  "category_id": category["id"], "iscrowd": int(ann.get("iscrowd", 0))})
    content = {"images": list(data.images.values()), "annotations": annotations, "categories": [category]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content))


def write_keypoint_results(path: str | Path, results: Sequence[dict[str, Any]]) -> None:
    """Write predictions in COCO results format (``image_id``, ``category_id``, ``keypoints``, ``score``)."""
    out = [{"image_id": int(r["image_id"]), "category_id": int(r.get("category_id", 1)),
            "keypoints": np.asarray(r["keypoints"], dtype=np.float64).reshape(-1).tolist(),
            "score": float(r.get("score", 1.0))} for r in results]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(out))


class CocoKeypointsDataset(Dataset):
    """Annotated persons of a COCO keypoints file, one item per annotation (top-down).

    Args:
        annotations: path of the annotation JSON.
        images_dir: folder holding the images' ``file_name``s.
        min_keypoints: skip annotations with fewer labelled keypoints (COCO trains on >= 1).
        include_crowd: keep ``iscrowd`` annotations.

    Items: ``image`` (PIL RGB), ``keypoints`` ``[K, 3]``, ``bbox``, ``area``, ``image_id``.
    """

    def __init__(self, annotations: str | Path, images_dir: str | Path, min_keypoints: int = 1,
                 include_crowd: bool = False) -> None:
        self.data = read_coco_keypoints(annotations)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"images_dir {self.images_dir} is not a folder")
        self.items = [a for a in self.data.annotations
                      if a["num_keypoints"] >= min_keypoints and (include_crowd or not a["iscrowd"])]
        self.keypoint_names, self.skeleton = self.data.keypoint_names, self.data.skeleton

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.items[index]
        image = load_image(self.images_dir / self.data.images[int(ann["image_id"])]["file_name"])
        return {"image": image, "keypoints": ann["keypoints"], "bbox": tuple(ann["bbox"]),
                "area": ann["area"], "image_id": int(ann["image_id"])}
