"""Task formats: how one task's samples look in the token stream, and the calls a user makes of it.

Formats are modules, so their own weights (a classification head) travel in the model's state dict under
``formats.NAME.``; a release's ``config.json`` names a format's ``kind`` (in ``FORMATS``), never a class path.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from anytoken.heads import DecodingConfig
from anytoken.loading import jsonable
from anytoken.registry import Registry
from anytoken.tokenizers.sequence import Segment, SequenceBatch, Tokens

AnytokenModel = Any  # ``anytoken.models.model.AnytokenModel``, which imports the formats (not the reverse)


def check_choice(name: str, value: Any, options: Sequence[Any]) -> None:
    """``ValueError`` unless ``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be {' or '.join(map(repr, options))}, got {value!r}")


def open_segment(modality: str, ids: Sequence[int] = ()) -> Tokens:
    """An open ``modality`` segment (holding ``ids``): where generation continues."""
    return Tokens(modality, torch.tensor(list(ids), dtype=torch.long), close=False)


class TaskFormat(nn.Module):
    """Base of every task format.

    Subclasses set ``kind`` (their registry key) and what ``bind`` checks the model for (``tags``,
    ``tokenizer_types``, ``needs_image_encoder``), keep their constructor arguments (JSON values) as
    attributes of the same names, and implement ``samples``. Any spec may add ``"decoding"`` (a
    ``DecodingConfig`` dict): that task's generation settings.
    """

    kind: ClassVar[str]
    tags: ClassVar[tuple[str, ...]] = ()  # task tags the TokenSpace must have
    tokenizer_types: ClassVar[dict[str, type]] = {}  # modality -> the tokenizer class it must have
    needs_image_encoder: ClassVar[bool] = False
    samples_key: ClassVar[str] = "images"  # the batch key with one entry per sample
    decoding: DecodingConfig | None = None  # this task's generation settings (spec key "decoding")

    def __init__(self) -> None:  # no settings (``config`` reads them from the signature)
        super().__init__()

    def decoding_of(self, model: AnytokenModel) -> DecodingConfig:
        """How this task generates unless a call says otherwise: its own settings, else the model's."""
        return self.decoding or model.decoding

    def budget(self, model: AnytokenModel, decoding: DecodingConfig | None, tokens: int) -> DecodingConfig:
        """``decoding`` (default this task's) with room for exactly ``tokens`` and the closing tag."""
        return replace(decoding or self.decoding_of(model), max_new_tokens=tokens + 1)

    @staticmethod
    def with_targets(prompts: list[list[Segment]], modality: str, targets: Any | None) -> list[list[Segment]]:
        """Each prompt followed by its target ids (``targets[i]``, 1-D) or, when ``targets`` is None, by an
        open ``modality`` segment (the prompt generation continues)."""
        if targets is None:
            return [[*prompt, open_segment(modality)] for prompt in prompts]
        return [[*prompt, Tokens(modality, ids, target=True)] for prompt, ids in zip(prompts, targets)]

    def config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (what ``config.json`` stores for this format)."""
        names = list(inspect.signature(type(self).__init__).parameters)[1:]  # all but self
        return jsonable({name: getattr(self, name) for name in names})

    def bind(self, model: AnytokenModel) -> None:
        """Check that ``model`` has what this format needs and build weights that depend on it (called
        once by the model, after its own modules exist); raise ``ValueError`` naming what is missing."""
        missing = [t for t in self.tags if t not in model.space.tasks]
        if missing:
            raise ValueError(f"{self.kind} needs the task tags {missing} in the TokenSpace "
                             f"(it has {list(model.space.tasks)})")
        if self.needs_image_encoder and model.image_encoder is None:
            raise ValueError(f"{self.kind} needs an image_encoder")
        for modality, cls in self.tokenizer_types.items():
            found = model.tokenizers.get(modality)
            if not isinstance(found, cls):
                raise ValueError(f"{self.kind} needs the {cls.name} tokenizer ({cls.__name__}) for "
                                 f"{modality!r} in vocab, got {type(found).__name__}")

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Segments per sample; with ``targets=False`` the prompt that generation continues."""
        raise NotImplementedError

    def num_samples(self, batch: dict[str, Any]) -> int:
        """Samples in ``batch`` (for logging): the length of ``batch[self.samples_key]``."""
        return len(batch[self.samples_key])

    def embed(self, model: AnytokenModel, seq: SequenceBatch, batch: dict[str, Any]) -> torch.Tensor:
        """Input embeddings ``[B, T, d]`` of built rows (placeholders filled with image features)."""
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


FORMATS = Registry("task format", "kind")
register_format = FORMATS.register  # class decorator: the format under ``cls.kind`` (users' own too)


def build_format(spec: dict[str, Any]) -> TaskFormat:
    """A format from ``{"kind": ..., **settings}`` (a ``config.json`` entry); clear errors on bad specs."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"a task format is a dict with a 'kind' string, got {spec!r:.200}")
    kind, cls = spec["kind"], FORMATS.lookup(spec["kind"])
    args = {k: v for k, v in spec.items() if k not in ("kind", "decoding")}
    try:
        fmt = cls(**args)
        if spec.get("decoding") is not None:
            fmt.decoding = DecodingConfig(**spec["decoding"])
    except TypeError as err:
        raise ValueError(f"bad settings for the {kind!r} format: {err}") from None
    return fmt


def format_spec(fmt: TaskFormat) -> dict[str, Any]:
    """The spec ``build_format`` rebuilds ``fmt`` from."""
    decoding = {} if fmt.decoding is None else {"decoding": jsonable(fmt.decoding)}
    return {"kind": fmt.kind, **fmt.config(), **decoding}
