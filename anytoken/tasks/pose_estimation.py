"""Pose estimation as token generation.

``<bos> <image> [features] </image> <pose_estimation> <pose> x y v ... </pose>``: the image enters as
encoder features (the prefix); the keypoints come out as pose tokens, generated under the pose tokenizer's
grammar, so every output is exactly one x bin, one y bin (and one visibility id) per keypoint. Optionally
a Fourier head (``head="fourier"``) predicts the coordinate bins.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.tasks.module import TokenTaskModule
from anytoken.tasks.pose_metrics import COCO_SIGMAS, oks_ap, pck
from anytoken.tokenizers.pose import PoseTokenizer
from anytoken.tokenizers.sequence import Segment, Tokens


class PoseEstimationModule(TokenTaskModule):
    """Predict one person's keypoints from an image crop.

    Batches are dicts from ``PoseDataModule``: ``images`` ``[B, 3, S, S]``, ``pose_ids`` ``[B, L]``,
    ``keypoints`` ``[B, K, 3]`` (pixels), ``frames``/``boxes`` ``[B, 4]``, ``areas`` ``[B]``.

    Args:
        head: ``"lm"`` (plain softmax over the vocabulary) or ``"fourier"`` (Fourier densities over the
            coordinate bins, see ``heads/fourier.py``).
        fourier_frequencies: Fourier head frequencies.
        fourier_gamma: Fourier head smoothness penalty weight.
        oks_sigmas: per-keypoint OKS constants; None: COCO's (17 keypoints only).
        pck_threshold: PCK's fraction of the person box's longer side.
        *args, **kwargs: those of ``TokenTaskModule`` (an ``image_encoder`` is required).
    """

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
        super().__init__(*args, **kwargs)
        if self.image_encoder is None:
            raise ValueError("PoseEstimationModule needs an image_encoder")
        if "pose_estimation" not in self.space.tasks or not isinstance(
            self.tokenizers.get("pose"), PoseTokenizer
        ):
            raise ValueError(
                "PoseEstimationModule needs a <pose_estimation> task tag and a PoseTokenizer for 'pose'"
            )
        self.pose: PoseTokenizer = self.tokenizers["pose"]
        self.use_head(head, "pose", num_frequencies=fourier_frequencies, gamma=fourier_gamma)
        K = self.pose.num_keypoints
        self.sigmas = list(oks_sigmas) if oks_sigmas is not None else (list(COCO_SIGMAS) if K == 17 else None)
        if self.sigmas is None or len(self.sigmas) != K:
            raise ValueError(f"oks_sigmas needs {K} values for this skeleton, got {oks_sigmas}")
        self.pck_threshold = pck_threshold
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i in range(len(batch["images"])):
            prompt = self.image_prompt(i, "pose_estimation")
            if targets:
                out.append(prompt + [Tokens("pose", batch["pose_ids"][i], target=True)])
            else:
                out.append(prompt + [Tokens("pose", torch.empty(0, dtype=torch.long), close=False)])
        return out

    @torch.no_grad()
    def predict_keypoints(
        self, images: torch.Tensor, frames: torch.Tensor | None = None, decoding: DecodingConfig | None = None
    ) -> torch.Tensor:
        """Keypoints ``[B, K, 3]`` ``(x, y, v)`` for ``images`` ``[B, 3, S, S]``.

        ``frames`` ``[B, 4]`` maps them to image pixels; None gives coordinates normalised to the crop.
        """
        decoding = replace(decoding or self.decoding, max_new_tokens=self.pose.num_tokens + 1)
        ids = self.generate_segment({"images": images.to(self.device)}, "pose", decoding)
        return self.pose.decode(torch.stack(ids), None if frames is None else frames.cpu())

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        self.log(f"{stage}/loss", self.loss(batch), batch_size=len(batch["images"]), sync_dist=True)
        pred = self.predict_keypoints(batch["images"], batch["frames"])
        self._outputs.setdefault(stage, []).append(
            {"pred": pred, **{k: batch[k].cpu() for k in ("keypoints", "boxes", "areas")}}
        )

    def pose_metrics(self, stage: str) -> dict[str, float]:
        """PCK, OKS AP/AP50/AP75 and visibility accuracy of the predictions collected for ``stage``."""
        outputs = self._outputs.pop(stage, [])
        if not outputs:
            return {}
        pred, gt, boxes, areas = (
            torch.cat([o[k] for o in outputs]) for k in ("pred", "keypoints", "boxes", "areas")
        )
        metrics = {f"pck@{self.pck_threshold:g}": pck(pred, gt, boxes, self.pck_threshold)}
        metrics |= oks_ap(pred, gt, boxes, areas, self.sigmas)
        labelled = gt[..., 2] > 0
        if self.pose.visibility == "token" and bool(labelled.any()):
            metrics["visibility_acc"] = float((pred[..., 2] == gt[..., 2])[labelled].float().mean())
        return metrics

    def _report(self, stage: str) -> None:
        metrics = self.pose_metrics(stage)
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, rank_zero_only=True)
        if metrics and stage == "test":
            rank_zero_info("pose " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report("val")
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        pred = self.predict_keypoints(batch["images"], batch["frames"])
        return [
            {"image_id": i, "keypoints": kp.flatten().tolist(), "score": 1.0}
            for i, kp in zip(batch["image_ids"], pred)
        ]
