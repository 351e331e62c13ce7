"""Images for training and evaluating image tokenizers: scenes, real photo tiles, or any folder of images.

Real photographs ship inside scikit-image and scikit-learn (nothing downloads). They are split by photo:
``TRAIN_PHOTOS`` give training tiles, ``HELDOUT_PHOTOS`` (a cat, a cup of coffee, a flower) the held-out
tiles the benchmarks report. Batches are float tensors ``[B, 3, S, S]`` in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2

from anytoken.tasks.data.base import TokenizerDataModule
from anytoken.tasks.data.synthetic.scenes import ScenesCaptionDataset, ScenesConfig
from anytoken.tokenizers.image_io import image_to_tensor, load_image

TRAIN_PHOTOS = (
    *("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "stereo_motorcycle"),
    *("camera", "coins", "moon", "brick", "grass", "gravel", "clock", "cell", "sklearn:china.jpg"),
)
HELDOUT_PHOTOS = ("chelsea", "coffee", "sklearn:flower.jpg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


def load_photo(name: str) -> np.ndarray:
    """A bundled photograph as uint8 ``[H, W, 3]``: a ``skimage.data`` name or ``"sklearn:FILE"``."""
    try:
        if name.startswith("sklearn:"):
            from sklearn.datasets import load_sample_image

            array = load_sample_image(name.removeprefix("sklearn:"))
        else:
            import skimage.data

            array = getattr(skimage.data, name)()
    except ImportError as err:
        raise ImportError(
            f"photo tiles need scikit-image and scikit-learn (pip install 'anytoken[data]'): {err}"
        ) from err
    array = array[0] if isinstance(array, tuple) else array  # stereo pairs: the left view
    array = np.repeat(array[..., None], 3, axis=-1) if array.ndim == 2 else array[..., :3]
    return np.array(array, dtype=np.uint8)  # a writable copy (skimage's arrays are read-only)


class PhotoTiles(Dataset):
    """Square tiles of the bundled photographs: items ``[3, S, S]`` float in ``[0, 1]``.

    A tile is a square crop of random side (``image_size`` up to 60% of the photo's shorter side) and
    position, resized to ``image_size``: a function of ``(seed, split, index)``, so every run sees the same.

    Args:
        split: ``"train"`` (tiles of ``TRAIN_PHOTOS``, randomly flipped) or ``"heldout"``.
        num: number of tiles.
        image_size: side S of a tile.
        seed: base seed of the crops.
    """

    def __init__(self, split: Literal["train", "heldout"], num: int, image_size: int = 64,
                 seed: int = 0) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"PhotoTiles split must be 'train' or 'heldout', got {split!r}")
        names = TRAIN_PHOTOS if split == "train" else HELDOUT_PHOTOS
        self.photos = [torch.from_numpy(load_photo(n)).permute(2, 0, 1) for n in names]  # (3, H, W) uint8
        self.split, self.num, self.size, self.seed = split, num, image_size, seed

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.split == "train", index])
        photo = self.photos[index % len(self.photos)]
        H, W = photo.shape[1:]
        short = min(H, W)
        side = int(rng.integers(min(self.size, short), max(min(self.size, short), int(0.6 * short)) + 1))
        y, x = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
        tile = v2.functional.resize(photo[:, y : y + side, x : x + side], [self.size, self.size],
                                    interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        tile = tile.float().div(255).clamp(0, 1)
        return tile.flip(-1) if self.split == "train" and rng.random() < 0.5 else tile


class SceneImages(ScenesCaptionDataset):
    """Rendered scenes of one split as ``[3, S, S]`` tensors (the images of ``ScenesCaptionDataset``)."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return image_to_tensor(self.scenes[index].render(self.config.image_size), self.config.image_size)


class ImageFiles(Dataset):
    """Image files loaded with ``load_image`` (clear errors for broken files), resized and centre-cropped
    (``image_to_tensor``)."""

    def __init__(self, files: list[Path], image_size: int) -> None:
        self.files, self.size = files, image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return image_to_tensor(load_image(self.files[index]), self.size)


def folder_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), by suffix; raises ``ValueError`` if none."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


class ImageDataModule(TokenizerDataModule):
    """Image batches ``[B, 3, S, S]`` for training tokenizers; one validation loader per source.

    Args:
        sources: any of ``"scenes"``, ``"photos"`` (bundled photo tiles) and ``"folder"``; training
            mixes them, validation reports each (``val_names`` gives the loader names).
        folder: the image folder, read recursively (source ``"folder"``).
        image_size: side S of the images.
        num_train: training images per source (a folder uses all its training files).
        num_val: validation images per source (scenes "val" split, held-out photo tiles).
        val_fraction: share of a folder's sorted files kept for validation.
        scenes: scene settings (its ``image_size`` is overridden by ``image_size``).
        batch_size, num_workers, seed: as ``TokenizerDataModule``'s (seed also draws the tiles).
    """

    def __init__(
        self,
        sources: list[Literal["scenes", "photos", "folder"]] | None = None,
        folder: str | None = None,
        image_size: int = 64,
        num_train: int = 20_000,
        num_val: int = 256,
        val_fraction: float = 0.1,
        scenes: ScenesConfig | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        sources = list(sources or ["scenes", "photos"])
        if not sources or set(sources) - {"scenes", "photos", "folder"} or len(set(sources)) != len(sources):
            raise ValueError(f"sources must be distinct names from scenes/photos/folder, got {sources}")
        if "folder" in sources and folder is None:
            raise ValueError("source 'folder' needs folder=PATH")
        if not 0 < val_fraction < 1 or num_train < 1 or num_val < 1:
            raise ValueError(
                f"need 0 < val_fraction < 1, num_train, num_val >= 1: {val_fraction}, {num_train}, {num_val}"
            )
        train_sets: list[Dataset] = []
        scenes_config = replace(scenes or ScenesConfig(), image_size=image_size)
        for source in sources:
            if source == "scenes":
                train_sets.append(SceneImages("train", num_train, scenes_config))
                self.val_sets["scenes"] = SceneImages("val", num_val, scenes_config)
            elif source == "photos":
                train_sets.append(PhotoTiles("train", num_train, image_size, seed))
                self.val_sets["photos"] = PhotoTiles("heldout", num_val, image_size, seed)
            else:
                files = folder_files(folder)
                n_val = max(1, round(len(files) * val_fraction)) if len(files) > 1 else 0
                train_sets.append(ImageFiles(files[: len(files) - n_val] or files, image_size))
                self.val_sets["folder"] = ImageFiles(files[len(files) - n_val :] or files, image_size)
        self.train_set = ConcatDataset(train_sets)
