"""DataModule for pose estimation: built-in stick figures or a COCO keypoints set, plus the pose tokenizer.

Each item is one person seen through a square frame: the whole image (``frame="image"``: one person per
image, as the stick figures) or the person's box enlarged by ``box_margin`` (``frame="box"``: top-down, as
for COCO). The frame is cut out (padding black outside the image), resized to ``image_size`` and its
keypoints are normalised to it, so token bins are fractions of the frame and decoding maps them back
to image pixels.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from anytoken.tasks.data.base import TaskDataModule, check_source, file_splits
from anytoken.tasks.data.formats.coco_keypoints import CocoKeypointsDataset
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig, StickFiguresDataset
from anytoken.tokenizers.pose import PoseTokenizer


def square_frame(bbox: tuple[float, float, float, float], margin: float) -> tuple[float, float, float, float]:
    """The square ``(x0, y0, s, s)`` centred on ``bbox`` ``(x, y, w, h)``, ``s = max(w, h) * (1 + margin)``;
    ``ValueError`` for an empty box."""
    x, y, w, h = bbox
    side = max(w, h) * (1 + margin)
    if not side > 0:
        raise ValueError(f"cannot frame an empty box {bbox}")
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def crop_frame(image: Image.Image, frame: tuple[float, float, float, float], size: int) -> torch.Tensor:
    """The frame of ``image`` resized to ``[3, size, size]`` in ``[0, 1]`` (black outside the image)."""
    x0, y0, w, h = frame
    box = (x0, y0, x0 + w, y0 + h)
    patch = image.transform((size, size), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(patch, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, S, S)


class PoseDataModule(TaskDataModule):
    """Persons with keypoints, as batches for ``PoseEstimationModule``.

    Args:
        source: ``"stick_figures"`` (built-in, generated) or ``"coco"`` (a COCO keypoints JSON + images).
        figures: stick figure settings (source ``"stick_figures"``).
        num_train: training figures; ``num_val``/``num_test`` likewise (test figures are held out).
        coco_train: ``[annotations.json, images_dir]`` for training (source ``"coco"``); ``coco_val`` for
            validation and testing.
        frame: ``"image"`` (one person per image) or ``"box"`` (top-down crops of person boxes).
        box_margin: how much the square around a person box is enlarged (frame ``"box"``).
        num_bins: coordinate bins per axis of the pose tokenizer.
        visibility: the tokenizer's visibility scheme (``"token"`` or ``"none"``).
        outside: the tokenizer's policy for keypoints outside the frame (``"error"`` or ``"clip"``).
        image_size: side of the square crops handed to the model.
        batch_size, num_workers, seed, shards: as ``TaskDataModule``'s.
    """

    TASK_TAGS = ("pose_estimation",)

    def __init__(
        self,
        source: Literal["stick_figures", "coco"] = "stick_figures",
        figures: StickFiguresConfig | None = None,
        num_train: int = 20_000,
        num_val: int = 256,
        num_test: int = 1_000,
        coco_train: tuple[str, str] | None = None,
        coco_val: tuple[str, str] | None = None,
        frame: Literal["image", "box"] = "image",
        box_margin: float = 0.25,
        num_bins: int = 64,
        visibility: Literal["token", "none"] = "token",
        outside: Literal["error", "clip"] = "error",
        image_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shards)
        if frame not in ("image", "box") or box_margin < 0:
            raise ValueError(
                f"frame must be 'image' or 'box' and box_margin >= 0, got {frame!r}, {box_margin}"
            )
        check_source(source, "stick_figures", "coco")
        self.frame, self.box_margin, self.image_size = frame, box_margin, image_size
        if source == "stick_figures":
            config = figures or StickFiguresConfig(image_size=image_size)
            sizes = {"train": num_train, "val": num_val, "test": num_test}
            self.splits = {s: StickFiguresDataset(s, n, config) for s, n in sizes.items() if n > 0}
        else:
            self.splits = file_splits(
                coco_train, coco_val, lambda f, _: CocoKeypointsDataset(*f),
                "source='coco' needs coco_train and coco_val, each [annotations.json, images_dir]",
            )
        train = self.splits["train"]
        self.tokenizer = PoseTokenizer(
            train.keypoint_names, train.skeleton, num_bins=num_bins, visibility=visibility, outside=outside
        )
        self.set_vocab({"pose": self.tokenizer, "image": None})

    def frame_of(self, item: dict[str, Any]) -> tuple[float, float, float, float]:
        """The square frame of one item, in image pixels."""
        if self.frame == "box":
            return square_frame(item["bbox"], self.box_margin)
        w, h = item["image"].size
        return square_frame((0.0, 0.0, float(w), float(h)), 0.0)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``images [B, 3, S, S]``, ``pose_ids [B, L]``, ``keypoints [B, K, 3]`` (pixels),
        ``frames``/``boxes`` ``[B, 4]``, ``areas [B]``, ``image_ids``."""
        frames = torch.tensor([self.frame_of(item) for item in items], dtype=torch.float64)  # (B, 4)
        keypoints = torch.from_numpy(np.stack([np.asarray(i["keypoints"], dtype=np.float64) for i in items]))
        crops = [crop_frame(i["image"], tuple(f.tolist()), self.image_size) for i, f in zip(items, frames)]
        return {
            "images": torch.stack(crops),  # (B, 3, S, S)
            "pose_ids": self.tokenizer.encode(keypoints, frames),
            "keypoints": keypoints.float(),
            "frames": frames,
            "boxes": torch.tensor([list(item["bbox"]) for item in items], dtype=torch.float64),
            "areas": torch.tensor([float(item["area"]) for item in items], dtype=torch.float64),
            "image_ids": [item["image_id"] for item in items],
        }
