"""Captioning: ``<bos> <image> [features or VQ ids] </image> <caption> <text> caption </text>``."""

from __future__ import annotations

from typing import Any

import torch

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, register_format
from anytoken.tokenizers.sequence import Segment, Special


@register_format
class CaptionFormat(TaskFormat):
    """Describe an image in text. Batches: ``images`` ``[B, 3, H, W]`` in ``[0, 1]`` and, for training,
    ``caption_ids`` (a list of 1-D local text ids)."""

    kind = "caption"
    tags = ("caption",)
    samples_key = "caption_ids"  # training batches from token shards may hold image_tokens, not images

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        if model.image_encoder is None and "image" not in model.media_tokenizers:
            raise ValueError("captioning needs an image_encoder or an image tokenizer (VQ tokens)")

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        prompts = [[Special("<bos>"), model.image_segment(batch, i), Special("<caption>")]
                   for i in range(len(batch["caption_ids" if targets else "images"]))]
        return self.with_targets(prompts, "text", batch["caption_ids"] if targets else None)

    @torch.no_grad()
    def caption(self, model: AnytokenModel, images: torch.Tensor,
                decoding: DecodingConfig | None = None) -> list[str]:
        """Captions for ``images`` ``[B, 3, H, W]`` in ``[0, 1]``."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = getattr(images, "shape", type(images).__name__)
            raise ValueError(f"images must be a tensor [B, 3, H, W], got {shape}")
        ids = model.generate(self, {"images": images.to(model.device)}, "text", decoding)
        return [model.tokenizers["text"].decode(i) for i in ids]
