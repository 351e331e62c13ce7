"""Pose estimation (``anytoken.models.pose.PoseFormat``): training and its metrics."""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, gather, per_sample, register_evaluation
from anytoken.tasks.metrics.pose import COCO_SIGMAS, oks_ap, pck
from anytoken.tasks.module import TokenTaskModule


class PoseEstimationModule(TokenTaskModule):
    """Predict one person's keypoints from an image crop (batches from ``PoseDataModule``). Arguments:
    ``PoseFormat``'s settings, then ``TokenTaskModule``'s (an ``image_encoder`` is required)."""

    def __init__(
        self,
        *args: Any,
        head: Literal["lm", "fourier"] = "lm",
        fourier_frequencies: int = 16,
        fourier_gamma: float = 0.0,
        oks_sigmas: list[float] | None = None,
        pck_threshold: float = 0.1,
        **kwargs: Any,
    ) -> None:
        pose = {"kind": "pose_estimation", "head": head, "fourier_frequencies": fourier_frequencies,
                "fourier_gamma": fourier_gamma, "oks_sigmas": oks_sigmas, "pck_threshold": pck_threshold}
        super().__init__(*args, formats={"pose_estimation": pose}, **kwargs)


@register_evaluation
class PoseEvaluation(Evaluation):
    """PCK, OKS AP/AP50/AP75 and visibility accuracy of generated keypoints (in image pixels)."""

    kind = "pose_estimation"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        pred = self.fmt.predict_keypoints(model, batch["images"], batch["frames"])  # (B, K, 3)
        return per_sample(image_id=batch["image_ids"], pred=pred, keypoints=batch["keypoints"].cpu(),
                          boxes=batch["boxes"].cpu(), areas=batch["areas"].cpu())

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        columns = gather(outputs, "pred", "keypoints", "boxes", "areas")
        pred, gt, boxes, areas = map(torch.stack, columns)  # (N, K, 3), (N, K, 3), (N, 4), (N,)
        sigmas = COCO_SIGMAS if self.fmt.oks_sigmas is None else self.fmt.oks_sigmas
        metrics = {f"pck@{self.fmt.pck_threshold:g}": pck(pred, gt, boxes, self.fmt.pck_threshold)}
        metrics |= oks_ap(pred, gt, boxes, areas, sigmas)
        labelled = gt[..., 2] > 0  # (N, K)
        if self.fmt.visibility_token and bool(labelled.any()):
            metrics["visibility_acc"] = float((pred[..., 2] == gt[..., 2])[labelled].float().mean())
        return metrics

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """COCO keypoint results: ``image_id``, flat ``keypoints`` ``[x, y, v] * K`` (pixels), ``score``."""
        return [{"image_id": o["image_id"], "keypoints": o["pred"].flatten().tolist(), "score": 1.0}
                for o in self.step(model, batch)]
