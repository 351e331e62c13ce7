"""Pose metrics: PCK and COCO's OKS-based keypoint AP (computed by pycocotools' ``COCOeval``).

PCK@a: the fraction of labelled keypoints (``v > 0``) predicted within ``a * max(w, h)``, ``(w, h)`` the
person's box (PCKh would need head sizes, which stick figures and COCO lack). OKS AP: COCO's keypoint AP
over OKS thresholds 0.50:0.05:0.95, ``OKS = mean_i exp(-d_i^2 / (2 s^2 k_i^2))`` over labelled keypoints,
``s^2`` the object area, ``k_i = 2 sigma_i``; evaluated top-down: one prediction per ground-truth person,
scored 1, each in its own evaluation image so COCOeval matches them one to one.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCO's per-keypoint OKS constants (pycocotools' default kpt_oks_sigmas), in COCO_KEYPOINTS order
COCO_SIGMAS: tuple[float, ...] = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
                                  0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
Array = torch.Tensor | np.ndarray


def _as_array(x: Array | Sequence, what: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} must be finite")
    return a


def _checked(pred: Array, gt: Array, boxes: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three as float64 arrays, their shapes checked."""
    pred, gt, boxes = _as_array(pred, "predictions"), _as_array(gt, "ground truth"), _as_array(boxes, "boxes")
    if gt.ndim != 3 or gt.shape[-1] != 3 or gt.shape[0] == 0:
        raise ValueError(f"ground truth must be [N, K, 3] (x, y, v) with N >= 1, got {gt.shape}")
    if pred.shape[:2] != gt.shape[:2] or pred.shape[-1] not in (2, 3):
        raise ValueError(f"predictions must be [N, K, 2 or 3] matching ground truth {gt.shape}, "
                         f"got {pred.shape}")
    if boxes.shape != (gt.shape[0], 4):
        raise ValueError(f"boxes must be [N, 4] (x, y, w, h), got {boxes.shape}")
    return pred, gt, boxes


def pck(pred: Array, gt: Array, boxes: Array, threshold: float = 0.1) -> float:
    """PCK@``threshold`` over the labelled keypoints of ``gt``, in ``[0, 1]`` (0.0 when none is labelled).

    Args:
        pred: ``[N, K, 2]`` or ``[N, K, 3]`` predicted keypoints (pixels).
        gt: ``[N, K, 3]`` ground truth ``(x, y, v)``.
        boxes: ``[N, 4]`` ground-truth person boxes ``(x, y, w, h)``; the reference length is ``max(w, h)``.
        threshold: the fraction of the reference length.
    """
    pred, gt, boxes = _checked(pred, gt, boxes)
    ref = boxes[:, 2:].max(axis=1)[:, None]  # (N, 1)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)  # (N, K)
    labelled = gt[..., 2] > 0
    return float((dist <= threshold * ref)[labelled].mean()) if labelled.any() else 0.0


def oks_ap(pred: Array, gt: Array, boxes: Array, areas: Array | Sequence[float],
           sigmas: Sequence[float] = COCO_SIGMAS) -> dict[str, float]:
    """COCO keypoint AP of one prediction per ground-truth person, via pycocotools' ``COCOeval``.

    Args:
        pred: ``[N, K, 2 or 3]`` predicted keypoints (pixels).
        gt: ``[N, K, 3]`` ground truth ``(x, y, v)``.
        boxes: ``[N, 4]`` ground-truth boxes ``(x, y, w, h)``.
        areas: ``[N]`` object areas (the OKS scale ``s^2``).
        sigmas: per-keypoint OKS constants (``K`` of them; COCO's 17 by default).

    Returns:
        ``{"ap", "ap50", "ap75"}`` (AP over OKS 0.50:0.95, at 0.50, at 0.75); persons with no labelled
        keypoint are ignored, as COCO does.
    """
    pred, gt, boxes = _checked(pred, gt, boxes)
    areas = _as_array(areas, "areas").reshape(-1)
    N, K = gt.shape[:2]
    if len(sigmas) != K or areas.shape != (N,):
        raise ValueError(f"need {K} sigmas and {N} areas, got {len(sigmas)} and {areas.shape}")
    keep = gt[..., 2].max(axis=1) > 0
    if not keep.any():
        raise ValueError("oks_ap needs at least one person with a labelled keypoint")
    dataset = {
        "images": [{"id": i} for i in range(N)],
        "annotations": [{"id": i + 1, "image_id": i, "category_id": 1, "keypoints": gt[i].flatten().tolist(),
                         "num_keypoints": int((gt[i, :, 2] > 0).sum()), "bbox": boxes[i].tolist(),
                         "area": float(areas[i]), "iscrowd": 0} for i in range(N) if keep[i]],
        "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(K)]}],
    }
    flat = np.concatenate([pred[..., :2], np.ones((N, K, 1))], axis=-1).reshape(N, -1)
    results = [{"image_id": i, "category_id": 1, "keypoints": row.tolist(), "score": 1.0}
               for i, row in enumerate(flat)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.params.imgIds = [i for i in range(N) if keep[i]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"ap": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2])}
