"""Task formats: how one task's samples look in the token stream, and the calls a user makes of it.

A format is the Lightning-free half of a task: ``samples`` turns a batch into segments (training rows or,
with ``targets=False``, the prompts generation continues), ``loss`` trains on them, and each format adds its
conveniences (``CaptionFormat.caption``, ``VQAFormat.ask``, ...). An ``AnytokenModel`` holds one format per
task it was trained on, by name; formats with weights of their own (a classification head) are modules, so
those weights travel in the model's state dict under ``formats.NAME.``.

Formats are found by ``kind`` in ``FORMATS``, filled by ``register_format``: a release's ``config.json``
names a kind, never a class path, so a file cannot choose what code runs.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from anytoken.heads import DecodingConfig
from anytoken.tokenizers.sequence import Segment, SequenceBatch

AnytokenModel = Any  # ``anytoken.models.model.AnytokenModel``, which imports the formats (not the reverse)


class TaskFormat(nn.Module):
    """Base of every task format.

    Subclasses set ``kind`` (their registry key) and ``tags`` (task tags the TokenSpace must have), take
    their settings as keyword arguments that ``config`` returns (JSON values), and implement ``samples``.
    Any spec may add ``"decoding"`` (a ``DecodingConfig`` dict): that task's generation settings, e.g. one
    task of a mixture sampling while the others decode greedily.
    """

    kind: ClassVar[str]
    tags: ClassVar[tuple[str, ...]] = ()
    decoding: DecodingConfig | None = None  # this task's generation settings (spec key "decoding")

    def decoding_of(self, model: AnytokenModel) -> DecodingConfig:
        """How this task generates unless a call says otherwise: its own settings, else the model's."""
        return self.decoding or model.decoding

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (what ``config.json`` stores for this format)."""
        return {}

    def bind(self, model: AnytokenModel) -> None:
        """Check that ``model`` has what this format needs and build weights that depend on it (called
        once by the model, after its own modules exist); raise ``ValueError`` naming what is missing."""
        missing = [t for t in self.tags if t not in model.space.tasks]
        if missing:
            raise ValueError(f"{self.kind} needs the task tags {missing} in the TokenSpace "
                             f"(it has {list(model.space.tasks)})")

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Segments per sample; with ``targets=False`` the prompt that generation continues."""
        raise NotImplementedError

    def num_samples(self, batch: dict[str, Any]) -> int:
        """Samples in ``batch`` (for logging)."""
        return len(batch["images"])

    def embed(self, model: AnytokenModel, seq: SequenceBatch, batch: dict[str, Any]) -> torch.Tensor:
        """Input embeddings ``[B, T, d]`` of built rows; formats whose placeholders are not image features
        override it."""
        return model.embed(seq, batch)

    def unconditional(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """The batch with its condition dropped (classifier-free guidance); None: no such form."""
        return None

    def rows(self, model: AnytokenModel, batch: dict[str, Any], targets: bool = True) -> SequenceBatch:
        """The model's rows of ``samples`` (training rows; with ``targets=False`` left-padded prompts)."""
        padding = {} if targets else {"padding_side": "left"}
        return model.sequences(self.samples(model, batch, targets), **padding)

    def loss(self, model: AnytokenModel, batch: dict[str, Any]) -> torch.Tensor:
        """Weighted next-token cross-entropy over the target segments of ``samples``."""
        seq = self.rows(model, batch)
        return model.lm_loss(seq, model.hidden_states(seq, self.embed(model, seq, batch)))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())


FORMATS: dict[str, type[TaskFormat]] = {}
F = TypeVar("F", bound=type[TaskFormat])


def register_format(cls: F) -> F:
    """Class decorator adding a format to ``FORMATS`` under ``cls.kind`` (a user's own formats too)."""
    if FORMATS.get(cls.kind, cls) is not cls:
        raise ValueError(f"format kind {cls.kind!r} is already registered by {FORMATS[cls.kind].__name__}")
    FORMATS[cls.kind] = cls
    return cls


def build_format(spec: dict[str, Any]) -> TaskFormat:
    """A format from ``{"kind": ..., **settings}`` (a ``config.json`` entry); clear errors on bad specs."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"a task format is a dict with a 'kind' string, got {spec!r:.200}")
    kind = spec["kind"]
    if kind not in FORMATS:
        raise ValueError(f"unknown task format {kind!r}; registered: {sorted(FORMATS)}")
    args = {k: v for k, v in spec.items() if k not in ("kind", "decoding")}
    try:
        fmt = FORMATS[kind](**args)
        if spec.get("decoding") is not None:
            fmt.decoding = DecodingConfig(**spec["decoding"])
    except TypeError as err:
        raise ValueError(f"bad settings for the {kind!r} format: {err}") from None
    return fmt


def format_spec(fmt: TaskFormat) -> dict[str, Any]:
    """The spec ``build_format`` rebuilds ``fmt`` from."""
    decoding = {} if fmt.decoding is None else {"decoding": asdict(fmt.decoding)}
    return {"kind": fmt.kind, **fmt.config(), **decoding}
