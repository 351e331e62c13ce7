"""Text-to-image: ``<bos> <text> caption </text> <draw> <image> VQ ids </image>``, decoded to pictures.

Classifier-free guidance: a sample marked ``unconditional`` drops its caption (while training, each sample
with probability ``cond_dropout``), and ``DecodingConfig.guidance_scale > 1`` contrasts the two prompts.
"""

from __future__ import annotations

from typing import Any

import torch

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, register_format
from anytoken.tokenizers.sequence import Segment, Special, Tokens


@register_format
class TextToImageFormat(TaskFormat):
    """Draw a caption as an image's VQ tokens. Batches: ``caption_ids`` (1-D local text ids each), for
    training ``images`` ``[B, 3, S, S]`` in ``[0, 1]`` (the targets, via the model's image tokenizer), and
    optionally ``unconditional`` (a bool per sample: leave its caption out).

    Args:
        cond_dropout: while training, the probability of a sample without its caption (guidance needs it).
    """

    kind = "text_to_image"
    tags = ("draw",)
    samples_key = "caption_ids"  # training batches from token shards hold image_tokens, not images

    def __init__(self, cond_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {cond_dropout}")
        self.cond_dropout = cond_dropout

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        if "image" not in model.media_tokenizers:
            raise ValueError("text-to-image needs an image tokenizer (VQ tokens) in its vocab")
        tokens = model.tokenizers["image"].grammar().max_length
        if self.decoding_of(model).max_new_tokens < tokens + 1:
            raise ValueError(f"decoding.max_new_tokens must be >= {tokens + 1} (the grid and </image>), "
                             f"got {self.decoding_of(model).max_new_tokens}")

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        n = len(batch["caption_ids"])
        dropped = batch.get("unconditional")
        if dropped is None:
            drop = targets and model.training and self.cond_dropout > 0
            dropped = (torch.rand(n) < self.cond_dropout).tolist() if drop else [False] * n
        captions = [[] if drop else [Tokens("text", ids, prefix=True)]
                    for ids, drop in zip(batch["caption_ids"], dropped)]
        prompts = [[Special("<bos>"), *caption, Special("<draw>")] for caption in captions]
        return self.with_targets(prompts, "image", model.media_ids(batch, "image") if targets else None)

    def unconditional(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"caption_ids": batch["caption_ids"], "unconditional": [True] * len(batch["caption_ids"])}

    @torch.no_grad()
    def draw(self, model: AnytokenModel, texts: list[str] | list[torch.Tensor],
             decoding: DecodingConfig | None = None) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` for ``texts`` (captions, or their 1-D local text ids)."""
        ids = [model.tokenizers["text"].encode(t) if isinstance(t, str) else t for t in texts]
        grids = model.generate(self, {"caption_ids": ids}, "image", decoding)  # B x (h * w,)
        h, w = model.tokenizers["image"].grid
        if any(len(g) != h * w for g in grids):
            raise ValueError(f"generation stopped before the {h} x {w} grid: raise decoding.max_new_tokens")
        return model.media_tokenizers["image"].decode(torch.stack(grids).view(-1, h, w))
