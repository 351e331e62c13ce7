"""Image captioning: ``<bos> <image> [features] </image> <caption> <text> caption </text>``."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.tasks.metrics import caption_metrics
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.sequence import Segment, Special, Tokens

EVAL_SPLITS = ("test", "heldout")  # names of the test dataloaders, in order


class CaptioningModule(TokenTaskModule):
    """Generate a caption from an image's encoder features (ClipCap/LLaVA-style prefix).

    Batches are dicts with ``images`` ``[B, 3, H, W]`` in ``[0, 1]``, ``caption_ids`` (list of 1-D local
    text ids), ``references`` (list of reference lists) and ``image_ids``. All arguments are those of
    ``TokenTaskModule``; ``num_examples`` captions are printed after testing.
    """

    def __init__(self, *args: Any, num_examples: int = 8, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.image_encoder is None and "image" not in self.media_tokenizers:
            raise ValueError("CaptioningModule needs an image_encoder or an image tokenizer (VQ tokens)")
        if "caption" not in self.space.tasks:
            raise ValueError(f"the TokenSpace has no <caption> tag (tasks: {list(self.space.tasks)})")
        self.num_examples = num_examples
        self._outputs: dict[str, list[tuple[str, str, list[str]]]] = {}

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        out = []
        for i in range(len(batch["images"])):
            prompt: list[Segment] = [
                Special("<bos>"),
                self.image_segment(batch, i),
                Special("<caption>"),
            ]
            if targets:
                out.append(prompt + [Tokens("text", batch["caption_ids"][i], target=True)])
            else:
                out.append(prompt + [Tokens("text", torch.empty(0, dtype=torch.long), close=False)])
        return out

    @torch.no_grad()
    def caption(self, images: torch.Tensor, decoding: DecodingConfig | None = None) -> list[str]:
        """Captions for ``images`` ``[B, 3, H, W]`` in ``[0, 1]``."""
        ids = self.generate_segment({"images": images.to(self.device)}, "text", decoding)
        return [self.tokenizers["text"].decode(i) for i in ids]

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        loss = self.loss(batch)
        self.log(
            f"{stage}/loss", loss, batch_size=len(batch["images"]), add_dataloader_idx=False, sync_dist=True
        )
        captions = self.caption(batch["images"])
        self._outputs.setdefault(stage, []).extend(zip(batch["image_ids"], captions, batch["references"]))

    def _report(self, stage: str) -> dict[str, float]:
        outputs = self._outputs.pop(stage, [])
        if not outputs:
            return {}
        # without Java, exact match alone: a long run must not fail at its first validation
        metrics = caption_metrics(
            {i: c for i, c, _ in outputs}, {i: r for i, _, r in outputs}, require_java=False
        )
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, add_dataloader_idx=False, rank_zero_only=True)
        return metrics

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

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(
            batch,
            EVAL_SPLITS[dataloader_idx] if dataloader_idx < len(EVAL_SPLITS) else f"test{dataloader_idx}",
        )

    def on_test_epoch_end(self) -> None:
        lines = ["", "Generated captions beside their references:"]
        for split in list(self._outputs):
            lines.append(f"[{split}]")
            for _, caption, refs in self._outputs[split][: self.num_examples]:
                mark = "ok" if caption.strip().lower() in {r.strip().lower() for r in refs} else "XX"
                lines.append(f"  {mark} {caption!r:<64} reference: {refs[0]!r}")
            self._report(split)
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, str]]:
        return [
            {"image_id": i, "caption": c} for i, c in zip(batch["image_ids"], self.caption(batch["images"]))
        ]
