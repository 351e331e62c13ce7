"""Datasets: the built-in procedural scenes and loaders for real formats (COCO captions)."""

from anytoken.tasks.data.formats.coco import CocoCaptionsDataset
from anytoken.tasks.data.synthetic.scenes import (
    COLORS,
    HELDOUT_PAIRS,
    POSITIONS,
    QA,
    SHAPES,
    SIZES,
    SPLITS,
    Scene,
    SceneObject,
    ScenesCaptionDataset,
    ScenesConfig,
    ScenesVQADataset,
    content_split,
    make_scenes,
)
from anytoken.tokenizers.image_io import load_image

__all__ = [
    "COLORS",
    "HELDOUT_PAIRS",
    "POSITIONS",
    "QA",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "CocoCaptionsDataset",
    "Scene",
    "SceneObject",
    "ScenesCaptionDataset",
    "ScenesConfig",
    "ScenesVQADataset",
    "content_split",
    "load_image",
    "make_scenes",
]
