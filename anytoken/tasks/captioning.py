"""Image captioning (``anytoken.models.captioning.CaptionFormat``): training and its metrics."""

from __future__ import annotations

from typing import Any

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, per_sample, register_evaluation
from anytoken.tasks.metrics.text import caption_metrics
from anytoken.tasks.module import TokenTaskModule


class CaptioningModule(TokenTaskModule):
    """Generate a caption from an image's encoder features (ClipCap/LLaVA-style prefix) or VQ tokens.
    Batches: ``CaptionFormat``'s, plus ``references`` and ``image_ids``. Arguments: ``TokenTaskModule``'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, formats={"caption": {"kind": "caption"}}, **kwargs)


@register_evaluation
class CaptionEvaluation(Evaluation):
    """BLEU-4, CIDEr-D and exact match of greedy captions against the references."""

    kind = "caption"
    predict_keys = ("image_id", "caption")

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        captions = self.fmt.caption(model, batch["images"])
        return per_sample(image_id=batch["image_ids"], caption=captions, references=batch["references"])

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        # without Java, exact match alone: a long run must not fail at its first validation
        return caption_metrics({o["image_id"]: o["caption"] for o in outputs},
                               {o["image_id"]: o["references"] for o in outputs}, require_java=False)

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        lines = []
        for o in outputs[: self.num_examples]:
            right = o["caption"].strip().lower() in {r.strip().lower() for r in o["references"]}
            mark = "ok" if right else "XX"
            lines.append(f"  {mark} {o['caption']!r:<64} reference: {o['references'][0]!r}")
        return lines
