"""Pose estimation: ``<bos> <image> [features] </image> <pose_estimation> <pose> x y v ... </pose>``,
generated under the pose grammar: exactly one x bin, one y bin (and one visibility id) per keypoint.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, register_format
from anytoken.tokenizers.pose import COCO_KEYPOINTS, PoseTokenizer
from anytoken.tokenizers.sequence import Segment


@register_format
class PoseFormat(TaskFormat):
    """Predict one person's keypoints from an image crop. Batches: ``images`` ``[B, 3, S, S]`` in
    ``[0, 1]`` and, for training, ``pose_ids`` ``[B, L]`` (local pose ids).

    Args:
        head: ``"lm"`` or ``"fourier"`` (Fourier densities over the coordinate bins, ``heads/fourier.py``).
        fourier_frequencies: Fourier head frequencies.
        fourier_gamma: Fourier head smoothness penalty weight.
        oks_sigmas: per-keypoint OKS constants of the evaluation; None: COCO's (17 keypoints only).
        pck_threshold: PCK's fraction of the person box's longer side (evaluation).
    """

    kind = "pose_estimation"
    tags = ("pose_estimation",)
    needs_image_encoder = True
    tokenizer_types = {"pose": PoseTokenizer}

    def __init__(
        self,
        head: Literal["lm", "fourier"] = "lm",
        fourier_frequencies: int = 16,
        fourier_gamma: float = 0.0,
        oks_sigmas: list[float] | None = None,
        pck_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        self.head, self.fourier_frequencies, self.fourier_gamma = head, fourier_frequencies, fourier_gamma
        self.oks_sigmas = None if oks_sigmas is None else [float(s) for s in oks_sigmas]
        self.pck_threshold = pck_threshold
        self.visibility_token = False  # whether poses carry a visibility id: set by ``bind``

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        pose = model.tokenizers["pose"]
        K = pose.num_keypoints
        if len(COCO_KEYPOINTS if self.oks_sigmas is None else self.oks_sigmas) != K:
            raise ValueError(f"oks_sigmas needs {K} values for this skeleton, got {self.oks_sigmas}")
        self.visibility_token = pose.visibility == "token"
        model.use_head(self.head, "pose", num_frequencies=self.fourier_frequencies, gamma=self.fourier_gamma)

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = [model.image_prompt(i, "pose_estimation") for i in range(len(batch["images"]))]
        return self.with_targets(prompts, "pose", batch["pose_ids"] if targets else None)

    @torch.no_grad()
    def predict_keypoints(self, model: AnytokenModel, images: torch.Tensor,
                          frames: torch.Tensor | None = None,
                          decoding: DecodingConfig | None = None) -> torch.Tensor:
        """Keypoints ``[B, K, 3]`` ``(x, y, v)`` of ``images`` ``[B, 3, S, S]`` in ``[0, 1]``: in image pixels
        through ``frames`` ``[B, 4]`` ``(x0, y0, w, h)``, else normalised to the crop."""
        pose: PoseTokenizer = model.tokenizers["pose"]
        decoding = self.budget(model, decoding, pose.num_tokens)
        ids = model.generate(self, {"images": images.to(model.device)}, "pose", decoding)
        return pose.decode(torch.stack(ids), None if frames is None else frames.cpu())  # (B, K, 3)
