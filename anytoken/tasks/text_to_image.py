"""Text-to-image (``anytoken.models.text_to_image.TextToImageFormat``): training with condition dropout,
and its metrics.

Evaluation on scenes judges each generated image with ``anytoken.tasks.metrics.scenes.judge_scene`` and
reports the fraction matching the prompt per attribute and for all four (``match_all``).
"""

from __future__ import annotations

from typing import Any

from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, register_evaluation
from anytoken.tasks.metrics.scenes import ATTRIBUTES, judge_scene, match
from anytoken.tasks.module import TokenTaskModule


class TextToImageModule(TokenTaskModule):
    """Generate an image's VQ tokens from its caption.

    Batches are dicts with ``caption_ids`` (list of 1-D local text ids), ``images`` ``[B, 3, S, S]``
    (training targets, tokenized by the model's frozen image tokenizer), and for evaluation ``captions``,
    ``objects`` (the scene's objects) and ``image_ids``. Arguments are those of ``TokenTaskModule`` plus:

    Args:
        cond_dropout: probability of training a sample without its caption (needed for guidance).
    """

    def __init__(self, *args: Any, cond_dropout: float = 0.1, **kwargs: Any) -> None:
        formats = {"text_to_image": {"kind": "text_to_image", "cond_dropout": cond_dropout}}
        super().__init__(*args, formats=formats, **kwargs)


@register_evaluation
class TextToImageEvaluation(Evaluation):
    """How often a generated image shows the prompt's object (``judge_scene``): per attribute and all four."""

    kind = "text_to_image"

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        images = self.fmt.draw(model, batch["caption_ids"]).cpu()  # (B, 3, S, S)
        out = []
        for image_id, caption, image, objects in zip(batch["image_ids"], batch["captions"], images,
                                                     batch["objects"]):
            judged = judge_scene(image)
            out.append({"image_id": image_id, "caption": caption, "judged": judged,
                        "match": match(judged, objects[0])})
        return out

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        n = max(len(outputs), 1)
        return {f"match_{k}": sum(o["match"][k] for o in outputs) / n for k in (*ATTRIBUTES, "all")}

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        lines = []
        for o in outputs[: self.num_examples]:
            mark = "ok" if o["match"]["all"] else "XX"
            drawn = " ".join(o["judged"][a] for a in ATTRIBUTES) if o["judged"] else "no object"
            lines.append(f"  {mark} {o['caption']!r:<48} drawn: {drawn}")
        return lines

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        images = self.fmt.draw(model, batch["caption_ids"]).cpu()  # (B, 3, S, S)
        return [{"image_id": i, "image": img} for i, img in zip(batch["image_ids"], images)]
