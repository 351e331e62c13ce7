"""Human-pose keypoints <-> tokens: coordinates normalised to a frame and binned per axis.

Local ids: ``[0, nx)`` x bins, ``[nx, nx + ny)`` y bins, then (``visibility="token"``) the COCO flags ``v``
= 0 (not labelled), 1 (hidden), 2 (visible). A pose is its keypoints in order, each ``x, y[, v]``;
unlabelled keypoints carry bin 0 on both axes and decode to ``(0, 0, 0)`` as COCO stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from anytoken.tokenizers.base import Interval, SegmentGrammar, Tokenizer, register_tokenizer
from anytoken.tokenizers.binning import PlaneBins, UniformBins, check_finite, check_slots

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
# COCO's 19 limbs (the annotation file lists them 1-based; here 0-based indices into COCO_KEYPOINTS)
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
NUM_VISIBILITY = 3  # COCO flags 0, 1, 2


@register_tokenizer
class PoseTokenizer(Tokenizer):
    """Keypoints ``[..., K, 3]`` (or ``[..., K, 2]``, all visible) <-> ``[..., K * (2 or 3)]`` local ids.

    Args:
        keypoint_names: the skeleton's keypoints in order (default COCO's 17).
        skeleton: limbs as 0-based index pairs (drawing and the COCO category; default COCO's 19).
        num_bins: bins per axis (x; also y unless ``num_bins_y`` is set).
        num_bins_y: bins along y when it differs from x.
        visibility: ``"token"`` adds one visibility id per keypoint; ``"none"`` encodes only labelled
            poses (every ``v > 0``) and decodes every keypoint as visible (``v = 2``).
        outside: ``"error"`` rejects labelled coordinates outside the frame; ``"clip"`` moves them to its
            border (the bound then holds only for points inside).
    """

    name = "pose"
    modality = "pose"

    def __init__(
        self, keypoint_names: Sequence[str] = COCO_KEYPOINTS,
        skeleton: Sequence[Sequence[int]] = COCO_SKELETON, num_bins: int = 64, num_bins_y: int | None = None,
        visibility: Literal["token", "none"] = "token", outside: Literal["error", "clip"] = "error",
    ) -> None:
        self.keypoint_names = tuple(keypoint_names)
        if not self.keypoint_names or len(set(self.keypoint_names)) != len(self.keypoint_names):
            raise ValueError(f"keypoint_names must be non-empty and unique, got {list(self.keypoint_names)}")
        self.skeleton = tuple((int(a), int(b)) for a, b in skeleton)
        K = len(self.keypoint_names)
        bad = [edge for edge in self.skeleton if not (0 <= edge[0] < K and 0 <= edge[1] < K)]
        if bad:
            raise ValueError(f"skeleton edges must index the {K} keypoints (0-based), got {bad}")
        if visibility not in ("token", "none") or outside not in ("error", "clip"):
            raise ValueError(
                f"visibility must be 'token'/'none' and outside 'error'/'clip', "
                f"got {visibility!r}, {outside!r}"
            )
        y_bins = num_bins if num_bins_y is None else num_bins_y
        self.bins = PlaneBins(UniformBins(0.0, 1.0, num_bins), UniformBins(0.0, 1.0, y_bins))
        self.visibility, self.outside = visibility, outside

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def tokens_per_keypoint(self) -> int:
        return 3 if self.visibility == "token" else 2

    @property
    def num_tokens(self) -> int:
        """Ids per pose."""
        return self.num_keypoints * self.tokens_per_keypoint

    @property
    def vocab_size(self) -> int:
        return self._steps()[-1][1]

    @property
    def bin_intervals(self) -> tuple[Interval, ...]:
        """Local id intervals of ordered coordinate bins (x, then y): where a Fourier head applies."""
        return self.bins.intervals

    @property
    def error_bound(self) -> tuple[float, float]:
        """Worst-case round-trip error per axis, as a fraction of the frame's width and height."""
        return self.bins.x.width / 2, self.bins.y.width / 2

    def _steps(self) -> tuple[Interval, ...]:
        """The allowed local ids of each id of a keypoint."""
        x, y = self.bins.intervals
        return (x, y, (y[1], y[1] + NUM_VISIBILITY)) if self.visibility == "token" else (x, y)

    def grammar(self) -> SegmentGrammar:
        """Exactly one x bin, one y bin (and one visibility id) per keypoint, ``num_tokens`` ids."""
        return SegmentGrammar(
            steps=tuple((s,) for s in self._steps()), min_length=self.num_tokens, max_length=self.num_tokens
        )

    def config(self) -> dict[str, Any]:
        return {
            "keypoint_names": list(self.keypoint_names),
            "skeleton": [list(edge) for edge in self.skeleton],
            "num_bins": self.bins.x.num_bins,
            "num_bins_y": self.bins.y.num_bins,
            "visibility": self.visibility,
            "outside": self.outside,
        }

    def encode(self, keypoints: Any, box: Any = None) -> torch.Tensor:
        """Keypoints -> local ids.

        Args:
            keypoints: ``[..., K, 3]`` ``(x, y, v)`` or ``[..., K, 2]`` (all visible), in the frame's units.
            box: ``[..., 4]`` frame ``(x0, y0, w, h)`` per pose (image or person box); None when the
                keypoints are already normalised to ``[0, 1]``.

        Returns:
            ``[..., num_tokens]`` long ids.
        """
        kp = self._check_keypoints(keypoints)  # (..., K, 3)
        labelled = kp[..., 2] > 0  # (..., K)
        if self.visibility == "none" and not bool(labelled.all()):
            raise ValueError(
                "visibility='none' encodes only labelled keypoints (v > 0); use visibility='token'"
            )
        frame = _frame(box, kp.shape[:-2], kp.dtype)
        xy = kp[..., :2] if frame is None else (kp[..., :2] - frame[..., :2]) / frame[..., 2:]  # (..., K, 2)
        xy = torch.where(labelled[..., None], xy, 0.0)  # unlabelled: any coordinates, bin 0
        check_finite(xy, "labelled keypoint coordinates")
        what = "keypoint coordinates normalised to the frame (outside the box or image?)"
        ids = self.bins.ids(xy, self.outside, what)  # (..., K, 2)
        if self.visibility == "token":
            ids = torch.cat([ids, kp[..., 2:].long() + self._steps()[2][0]], dim=-1)
        return ids.flatten(-2)  # (..., K * tokens_per_keypoint)

    def decode(self, ids: Any, box: Any = None) -> torch.Tensor:
        """Local ids ``[..., num_tokens]`` -> keypoints ``[..., K, 3]`` float ``(x, y, v)`` in frame units."""
        ids = self.check_ids(ids)
        n, per = ids.shape[-1] if ids.dim() else 0, self.tokens_per_keypoint
        if ids.dim() == 0 or n % per or n != self.num_tokens:
            raise ValueError(
                f"a pose is {self.num_keypoints} keypoints x {per} ids = {self.num_tokens} ids, got a last "
                f"dimension of {n} "
                f"({'not a whole number of keypoints' if n % per else 'wrong keypoint count'})"
            )
        groups = ids.view(*ids.shape[:-1], self.num_keypoints, per)  # (..., K, per)
        check_slots(groups, self._steps(), "pose ids of each keypoint")
        xy = self.bins.points(groups[..., :2])  # (..., K, 2)
        if self.visibility == "token":
            v = (groups[..., 2] - self._steps()[2][0]).float()
        else:
            v = torch.full_like(xy[..., 0], 2.0)
        frame = _frame(box, groups.shape[:-2], xy.dtype)
        xy = xy if frame is None else xy * frame[..., 2:] + frame[..., :2]
        xy = torch.where(v[..., None] > 0, xy, 0.0)
        return torch.cat([xy, v[..., None]], dim=-1)  # (..., K, 3)

    def reconstruction_error(self, x: Any) -> float:
        """Largest coordinate error of the round trip over labelled keypoints of normalised poses ``x``."""
        kp = self._check_keypoints(x)
        out = self.decode(self.encode(kp))
        labelled = kp[..., 2] > 0
        return float((out[..., :2] - kp[..., :2]).abs()[labelled].max()) if bool(labelled.any()) else 0.0

    def _check_keypoints(self, keypoints: Any) -> torch.Tensor:
        kp = torch.as_tensor(keypoints)
        if not kp.is_floating_point():
            kp = kp.float()
        if kp.dim() < 2 or kp.shape[-1] not in (2, 3):
            raise ValueError(
                f"keypoints must be [..., K, 3] (x, y, v) or [..., K, 2], got shape {tuple(kp.shape)}"
            )
        if kp.shape[-2] != self.num_keypoints:
            raise ValueError(
                f"expected {self.num_keypoints} keypoints ({', '.join(self.keypoint_names[:4])}, ...), "
                f"got {kp.shape[-2]} (shape {tuple(kp.shape)})"
            )
        if kp.shape[-1] == 2:
            kp = torch.cat([kp, torch.full_like(kp[..., :1], 2.0)], dim=-1)
        v = kp[..., 2]
        if not bool(((v == 0) | (v == 1) | (v == 2)).all()):
            raise ValueError(
                f"visibility flags must be 0, 1 or 2 (COCO), got {sorted(set(v.flatten().tolist()))[:6]}"
            )
        return kp


def _frame(box: Any, batch_shape: torch.Size, dtype: torch.dtype) -> torch.Tensor | None:
    """The frame ``[..., 1, 4]`` broadcastable to ``[..., K, *]``, checked; None for normalised input."""
    if box is None:
        return None
    box = torch.as_tensor(box, dtype=dtype)
    if box.shape[-1:] != (4,) or box.shape[:-1] != batch_shape:
        raise ValueError(
            f"box must be [..., 4] (x0, y0, w, h) matching keypoints' batch {tuple(batch_shape)}, "
            f"got {tuple(box.shape)}"
        )
    check_finite(box, "box")
    if bool((box[..., 2:] <= 0).any()):
        raise ValueError(f"box width and height must be positive, got {box.view(-1, 4)[:3].tolist()}")
    return box[..., None, :]  # (..., 1, 4)
