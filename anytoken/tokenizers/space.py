"""TokenSpace: one shared vocabulary of special tokens plus one contiguous id range per modality.

Layout (global ids): ``<pad> <bos> <eos>``, then ``<m>``/``</m>`` begin/end markers for every modality,
then one task tag per task (``<caption>``, ``<vqa>``, ...), then each modality's range in the order given,
then unused padding ids up to a multiple of ``pad_to_multiple`` (never produced, never sampled).
The TokenSpace alone knows global ids; everything else asks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch

from anytoken.tokenizers.base import SegmentGrammar, Tokenizer

BASE_SPECIALS = ("<pad>", "<bos>", "<eos>")


class TokenSpace:
    """The shared vocabulary.

    Args:
        modalities: modality name -> local vocabulary size, in range order. Size 0 gives a modality only
            its begin/end markers: it enters the stream as continuous features (an image encoder prefix).
        tasks: task tag names; each becomes a special token ``<task>``.
        pad_to_multiple: round the total vocabulary up to a multiple of this (64 keeps matmuls aligned).
    """

    def __init__(
        self, modalities: Mapping[str, int], tasks: Sequence[str] = (), pad_to_multiple: int = 64
    ) -> None:
        if not modalities:
            raise ValueError("a TokenSpace needs at least one modality")
        for name, size in modalities.items():
            if not name.isidentifier() or not isinstance(size, int) or size < 0:
                raise ValueError(
                    f"modality {name!r}: names must be identifiers and sizes ints >= 0, got {size}"
                )
        if len(set(tasks)) != len(tasks) or set(tasks) & set(modalities):
            raise ValueError(f"task tags must be unique and differ from modality names: {list(tasks)}")
        self.modalities = dict(modalities)
        self.tasks = tuple(tasks)
        self.pad_to_multiple = pad_to_multiple
        specials = list(BASE_SPECIALS)
        for name in self.modalities:
            specials += [f"<{name}>", f"</{name}>"]
        specials += [f"<{task}>" for task in self.tasks]
        self.specials = {token: i for i, token in enumerate(specials)}
        self.pad_id, self.bos_id, self.eos_id = (self.specials[token] for token in BASE_SPECIALS)
        sizes = list(self.modalities.values())
        self._offsets = dict(zip(self.modalities, accumulate(sizes, initial=len(specials))))  # range starts
        self.used_size = len(specials) + sum(sizes)
        self.vocab_size = -(-self.used_size // pad_to_multiple) * pad_to_multiple

    @classmethod
    def from_tokenizers(
        cls, tokenizers: Mapping[str, Tokenizer], tasks: Sequence[str] = (), **kwargs: Any
    ) -> TokenSpace:
        """Build the space from modality name -> tokenizer."""
        return cls({name: tok.vocab_size for name, tok in tokenizers.items()}, tasks, **kwargs)

    def special(self, token: str) -> int:
        """Global id of a special token such as ``"<caption>"`` or ``"</image>"``."""
        if token not in self.specials:
            raise ValueError(f"unknown special token {token!r}; known: {list(self.specials)}")
        return self.specials[token]

    def begin(self, modality: str) -> int:
        """Global id of the ``<modality>`` marker."""
        return self.specials[f"<{self._check_modality(modality)}>"]

    def end(self, modality: str) -> int:
        """Global id of the ``</modality>`` marker."""
        return self.specials[f"</{self._check_modality(modality)}>"]

    def task(self, task: str) -> int:
        """Global id of the ``<task>`` tag."""
        if task not in self.tasks:
            raise ValueError(f"unknown task tag {task!r}; this TokenSpace has {list(self.tasks)}")
        return self.specials[f"<{task}>"]

    def range(self, modality: str) -> range:
        """The global ids of one modality."""
        start = self._offsets[self._check_modality(modality)]
        return range(start, start + self.modalities[modality])

    def to_global(self, modality: str, ids: torch.Tensor) -> torch.Tensor:
        """Map local ids of ``modality`` to global ids (raises ``ValueError`` if any id is out of range)."""
        ids = torch.as_tensor(ids)
        size = self.modalities[self._check_modality(modality)]
        if ids.is_floating_point():
            raise ValueError(f"token ids must be integers, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
            raise ValueError(
                f"{modality} ids must lie in [0, {size}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        return ids.long() + self._offsets[modality]

    def to_local(self, ids: torch.Tensor, modality: str) -> torch.Tensor:
        """Map global ids that all belong to ``modality`` back to its local ids."""
        ids = torch.as_tensor(ids).long()
        r = self.range(modality)
        outside = (ids < r.start) | (ids >= r.stop)
        if outside.any():
            bad = ids[outside][:5].tolist()
            raise ValueError(f"ids {bad} are not {modality} tokens (its range is [{r.start}, {r.stop}))")
        return ids - r.start

    def modality_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Modality index per id: 0 for special/padding ids, ``i + 1`` for the i-th modality."""
        ids = torch.as_tensor(ids).long()
        out = torch.zeros_like(ids)
        for i, name in enumerate(self.modalities):
            r = self.range(name)
            out[(ids >= r.start) & (ids < r.stop)] = i + 1
        return out

    def modality_index(self, modality: str) -> int:
        """The value ``modality_of`` gives ids of ``modality``."""
        return list(self.modalities).index(self._check_modality(modality)) + 1

    def grammar_mask(self, modality: str, grammar: SegmentGrammar) -> torch.Tensor:
        """Bool ``[len(grammar.steps), vocab_size]``: which global ids each grammar step allows."""
        offset, size = self._offsets[self._check_modality(modality)], self.modalities[modality]
        mask = torch.zeros(len(grammar.steps), self.vocab_size, dtype=torch.bool)
        for s, step in enumerate(grammar.steps):
            for lo, hi in step:
                if hi > size:
                    raise ValueError(
                        f"grammar interval [{lo}, {hi}) exceeds {modality}'s vocabulary of {size}"
                    )
                mask[s, offset + lo : offset + hi] = True
        return mask

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable layout; ``from_dict`` rebuilds an equal space."""
        return {"modalities": dict(self.modalities), "tasks": list(self.tasks),
                "pad_to_multiple": self.pad_to_multiple}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSpace:
        return cls(data["modalities"], data.get("tasks", ()), data.get("pad_to_multiple", 64))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def check_same(self, other: TokenSpace, what: str = "checkpoint") -> None:
        """Raise ``ValueError`` describing how ``other`` differs from this space."""
        if self == other:
            return
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [f"{k}: {theirs[k]!r} != {mine[k]!r}" for k in mine if mine[k] != theirs.get(k)]
        raise ValueError(f"the {what}'s TokenSpace differs from this one ({'; '.join(diffs)})")

    def describe(self) -> str:
        """A table of the layout: specials, then each modality's global range."""
        rows = [f"{'specials':<12} [0, {len(self.specials)})  " + " ".join(self.specials)]
        for name in self.modalities:
            r = self.range(name)
            rows.append(f"{name:<12} [{r.start}, {r.stop})  {len(r)} ids")
        rows.append(
            f"{'unused':<12} [{self.used_size}, {self.vocab_size})  "
            f"padding to a multiple of {self.pad_to_multiple}"
        )
        return "\n".join(rows)

    def __repr__(self) -> str:
        tasks = list(self.tasks)
        return f"TokenSpace(modalities={self.modalities}, tasks={tasks}, vocab_size={self.vocab_size})"

    def _check_modality(self, modality: str) -> str:
        if modality not in self.modalities:
            raise ValueError(f"unknown modality {modality!r}; this TokenSpace has {list(self.modalities)}")
        return modality


@dataclass
class Vocab:
    """What a model is built with (a DataModule makes one; ``to_dict`` is the plain form the CLI links into
    the model): the TokenSpace, the tokenizers, and data-given extras such as VQA's answer classes."""

    space: TokenSpace
    tokenizers: dict[str, Tokenizer]  # modality -> tokenizer
    paths: dict[str, str | None] = field(default_factory=dict)  # modality -> save_pretrained dir (weights)
    extras: dict[str, Any] = field(default_factory=dict)  # JSON values formats read (answers, mixture tasks)

    def to_dict(self) -> dict[str, Any]:
        specs = {}
        for modality, tokenizer in self.tokenizers.items():
            path = self.paths.get(modality)
            specs[modality] = tokenizer.spec() | ({"path": str(path)} if path else {})
        return {"token_space": self.space.to_dict(), "tokenizers": specs, **self.extras}
