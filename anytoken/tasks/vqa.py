"""Visual question answering (``anytoken.models.vqa.VQAFormat``): training and the official VQA accuracy
(``anytoken.tasks.metrics.text.vqa_scores``), overall and per question type."""

from __future__ import annotations

from typing import Any, Literal

from anytoken.heads.classify import Pooling
from anytoken.models import AnytokenModel
from anytoken.tasks.evaluation import Evaluation, gather, per_sample, register_evaluation
from anytoken.tasks.metrics.text import vqa_scores
from anytoken.tasks.module import TokenTaskModule


class VQAModule(TokenTaskModule):
    """Answer questions about images from their encoder features (batches from ``VQADataModule`` or, for
    spoken questions, ``SpokenVQADataModule``).

    Args:
        head, pooling, layout, question_modality, caption_weight: ``VQAFormat``'s.
        *args, **kwargs: those of ``TokenTaskModule``; ``vocab`` carries ``"answers"`` for ``"classify"``,
            and ``init_from`` may name the quickstart captioner (``configs/vqa_scenes_from_captioner.yaml``).
    """

    def __init__(
        self,
        *args: Any,
        head: Literal["generate", "classify"] = "generate",
        pooling: Pooling = "last",
        layout: Literal["image_first", "question_first"] = "image_first",
        question_modality: Literal["text", "audio"] = "text",
        caption_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        vqa = {"kind": "vqa", "head": head, "pooling": pooling, "layout": layout,
               "question_modality": question_modality, "caption_weight": caption_weight}
        super().__init__(*args, formats={"vqa": vqa}, **kwargs)


@register_evaluation
class VQAEvaluation(Evaluation):
    """The official VQA accuracy of the answers, overall (``acc``) and per question type (``acc_TYPE``);
    ``humans`` are the human answers."""

    kind = "vqa"
    example = "  {question!r:<40} -> {answer!r:<16} humans: {humans[0]!r}"
    predict_keys = ("image_id", "question", "answer")

    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return per_sample(answer=self.fmt.answer(model, batch), question=batch["questions"],
                          humans=batch["answers"], question_type=batch["question_types"],
                          image_id=batch["image_ids"])

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        scores = vqa_scores(*gather(outputs, "answer", "humans", "question_type"))
        return {"acc" if name == "overall" else "acc_" + name.replace("/", "_").replace(" ", "_"): value
                for name, value in scores.items()}
