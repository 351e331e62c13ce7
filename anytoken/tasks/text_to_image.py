"""Text-to-image (``anytoken.models.text_to_image.TextToImageFormat``): training with condition dropout,
and its metrics."""

from __future__ import annotations

from typing import Any

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, per_sample, register_evaluation
from anytoken.tasks.metrics.scenes import ATTRIBUTES, judge_scene, match
from anytoken.tasks.module import TokenTaskModule


class TextToImageModule(TokenTaskModule):
    """Generate an image's VQ tokens from its caption (``TextToImageFormat``; evaluation batches add
    ``captions``, ``objects`` and ``image_ids``). Arguments: ``TokenTaskModule``'s, plus ``cond_dropout``,
    the probability of training a sample without its caption (needed for guidance)."""

    def __init__(self, *args: Any, cond_dropout: float = 0.1, **kwargs: Any) -> None:
        formats = {"text_to_image": {"kind": "text_to_image", "cond_dropout": cond_dropout}}
        super().__init__(*args, formats=formats, **kwargs)


@register_evaluation
class TextToImageEvaluation(Evaluation):
    """How often a generated image shows the prompt's object (``judge_scene``): the fraction matching it per
    attribute and for all four (``match_all``)."""

    kind = "text_to_image"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        images = self.fmt.draw(model, batch["caption_ids"]).cpu()  # (B, 3, S, S)
        judged = [judge_scene(image) for image in images]
        return per_sample(image_id=batch["image_ids"], caption=batch["captions"], judged=judged,
                          match=[match(j, objects[0]) if objects else None  # no objects: not a scene
                                 for j, objects in zip(judged, batch["objects"])])

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        scored = [o for o in outputs if o["match"] is not None]
        if not scored:
            return {}
        return {f"match_{k}": sum(o["match"][k] for o in scored) / len(scored) for k in (*ATTRIBUTES, "all")}

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        lines = []
        for o in [o for o in outputs if o["match"] is not None][: self.num_examples]:
            drawn = " ".join(o["judged"][a] for a in ATTRIBUTES) if o["judged"] else "no object"
            lines.append(f"  {'ok' if o['match']['all'] else 'XX'} {o['caption']!r:<48} drawn: {drawn}")
        return lines

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        images = self.fmt.draw(model, batch["caption_ids"]).cpu()  # (B, 3, S, S)
        return per_sample(image_id=batch["image_ids"], image=images)
