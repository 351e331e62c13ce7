"""What a task measures (one ``Evaluation`` per format kind): outputs per batch, metrics per split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch

from anytoken.models import AnytokenModel, TaskFormat
from anytoken.registry import Registry
from anytoken.tokenizers.sequence import IGNORE_INDEX


class Evaluation:
    """Scores one task's format. The default scores teacher-forced token accuracy (any format).

    Args:
        fmt: the format evaluated (its settings, e.g. a VQA head, decide how outputs are made).
        num_examples: outputs printed per split after testing.
    """

    kind: ClassVar[str] = ""
    example: ClassVar[str] = ""  # ``str.format`` template of an output's line after testing ("": none)
    predict_keys: ClassVar[tuple[str, ...]] = ()  # the output keys ``predict`` returns (): all

    def __init__(self, fmt: TaskFormat, num_examples: int = 8) -> None:
        self.fmt, self.num_examples = fmt, num_examples

    @torch.no_grad()
    def step(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Outputs of one batch: one dict per sample (here, of its teacher-forced target tokens)."""
        seq = self.fmt.rows(model, batch)
        hidden = model.hidden_states(seq, self.fmt.embed(model, seq, batch))  # (B, T, d)
        keep = seq.targets != IGNORE_INDEX
        right = model.lm_head(hidden[keep]).argmax(-1) == seq.targets[keep]  # (N,)
        return [{"correct": int(right.sum()), "tokens": int(keep.sum())}]

    def report(self, outputs: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics over a split's outputs."""
        tokens = sum(o["tokens"] for o in outputs)
        return {"token_accuracy": sum(o["correct"] for o in outputs) / max(tokens, 1)}

    def examples(self, outputs: list[dict[str, Any]]) -> list[str]:
        """Lines shown after testing (e.g. predictions beside references)."""
        return [self.example.format(**o) for o in outputs[: self.num_examples]] if self.example else []

    def predict(self, model: AnytokenModel, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """What ``anytoken predict`` returns for a batch."""
        outputs = self.step(model, batch)
        return [{k: o[k] for k in self.predict_keys} for o in outputs] if self.predict_keys else outputs


def per_sample(**columns: Iterable[Any]) -> list[dict[str, Any]]:
    """One output dict per sample from columns of per-sample values (as ``zip``, the shortest decides)."""
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def gather(outputs: list[dict[str, Any]], *keys: str) -> list[list[Any]]:
    """Each key's values over a split's outputs."""
    return [[o[k] for o in outputs] for k in keys]


EVALUATIONS = Registry("evaluation of format kind", "kind")
register_evaluation = EVALUATIONS.register  # class decorator: ``cls`` evaluates formats of ``cls.kind``


def evaluation_for(fmt: TaskFormat, num_examples: int = 8) -> Evaluation:
    """The registered evaluation of ``fmt``'s kind, or token accuracy when it has none (templates)."""
    return EVALUATIONS.get(fmt.kind, Evaluation)(fmt, num_examples)
