"""A weighted mixture of task DataModules for one any-to-any model (``MixtureModule``; docs/any_to_any.md).

Training batches are lists of ``(task, batch)`` pairs, which the model packs into rows; validation and test
keep one dataloader per task (and per test split), named by ``eval_names``, so every task's metrics stay
separate. The vocabulary is the union of the entries' vocabularies plus ``tasks`` (per task: format spec,
template and loss weight; never a class path).
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from anytoken.loading import jsonable
from anytoken.models.formats import build_format
from anytoken.models.templates import Template
from anytoken.tasks.data.base import HostBatches, TaskDataModule
from anytoken.tasks.data.mixture_stream import MixtureStream
from anytoken.tokenizers.base import tokenizer_from_spec
from anytoken.tokenizers.space import TokenSpace

ENTRY_KEYS = {"datamodule", "data_args", "format", "template", "weight", "loss_weight", "shared"}


def import_class(class_path: str) -> type:
    """The class at ``"package.module.Name"``, with a clear error when it does not exist."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import {class_path!r}: {err}") from None


def instantiate(class_path: str, args: dict[str, Any]) -> Any:
    """``class_path(**args)`` with the arguments typed as the CLI types them (through jsonargparse: nested
    dataclass configs such as ``ScenesConfig`` may be dicts)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(import_class(class_path), "target")
    try:
        config = parser.parse_object({"target": args})
    except Exception as err:  # noqa: BLE001 - jsonargparse's errors vary; say which class they are about
        raise ValueError(f"bad arguments for {class_path}: {err}") from None
    return parser.instantiate(config).target


def union_vocab(vocabs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One vocabulary holding every task's modalities, tags, tokenizers and extra keys (e.g. ``answers``).

    A modality of size 0 (markers only: features enter the stream) merges with a sized one of the same
    name; otherwise sizes, tokenizer specs and extra keys must agree, or ``ValueError`` names the clash.
    """
    modalities: dict[str, int] = {}
    tags: list[str] = []
    tokenizers: dict[str, dict[str, Any]] = {}
    extras: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for task, vocab in vocabs.items():
        space = TokenSpace.from_dict(vocab["token_space"])
        for name, size in space.modalities.items():
            have = modalities.setdefault(name, size)
            if have != size and 0 not in (have, size):
                raise ValueError(f"modality {name!r} has {size} ids in task {task!r} but {have} in an "
                                 "earlier task: share one tokenizer (the entry's 'shared')")
            modalities[name] = max(have, size)
        tags += [t for t in space.tasks if t not in tags]
        for name, spec in vocab["tokenizers"].items():
            if name in tokenizers and _key(tokenizers[name]) != _key(spec):
                raise ValueError(f"tasks {owner[name]!r} and {task!r} tokenize {name!r} differently: give "
                                 f"{task!r} the entry key shared: {{{name}: <its tokenizer-path argument>}}")
            tokenizers.setdefault(name, spec)
            owner.setdefault(name, task)
        for key, value in vocab.items():
            if key in ("token_space", "tokenizers"):
                continue
            if key in extras and extras[key] != value:
                raise ValueError(f"tasks disagree on vocab[{key!r}] (task {task!r})")
            extras[key] = value
    space = TokenSpace(modalities, tags)
    return {"token_space": space.to_dict(), "tokenizers": tokenizers, **extras}


def _key(spec: dict[str, Any]) -> str:
    """Identity of a tokenizer spec (its ``path`` is where weights come from, not what it is)."""
    return json.dumps(jsonable({k: v for k, v in spec.items() if k != "path"}), sort_keys=True)


class MixtureDataModule(HostBatches, L.LightningDataModule):
    """Several tasks' DataModules as one weighted stream, for ``MixtureModule``.

    Args:
        tasks: task name -> entry with keys ``datamodule`` (class path of its ``TaskDataModule``, a plain
            string the CLI passes through), ``data_args`` (its arguments), ``format`` (the task's format
            spec, ``{kind: ..., **settings}``), ``template`` (its layout as data), ``weight`` (sampling
            weight, default 1), ``loss_weight`` (default 1), ``shared`` (modality -> the DataModule's init
            argument that loads a saved tokenizer of it).
        tasks_per_step: task batches per training step (each task's batch size is its DataModule's).
        steps_per_epoch: training steps per epoch.
        seed: seed of the task draws (the order is a function of seed and epoch).
        shards: a folder of token shard sets, one per task (``SHARDS/TASK``, what ``anytoken tokenize``
            writes for a mixture config): each task trains from its own.
    """

    def __init__(self, tasks: dict[str, dict[str, Any]], tasks_per_step: int = 4, steps_per_epoch: int = 1000,
                 seed: int = 0, shards: str | None = None) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a mixture needs at least one task")
        if tasks_per_step < 1 or steps_per_epoch < 1:
            raise ValueError(f"tasks_per_step and steps_per_epoch must be >= 1, got {tasks_per_step}, "
                             f"{steps_per_epoch}")
        self.entries = {name: _check_entry(name, entry) for name, entry in tasks.items()}
        self.tasks_per_step, self.steps_per_epoch, self.seed = tasks_per_step, steps_per_epoch, seed
        self.shards = shards
        self.datamodules = self._build_datamodules()
        self._vocab = union_vocab({name: dm.vocab for name, dm in self.datamodules.items()})
        self._vocab["tasks"] = {
            name: {"format": entry.get("format"), "template": entry.get("template"),
                   "loss_weight": float(entry.get("loss_weight", 1.0))}
            for name, entry in self.entries.items()
        }

    def _build_datamodules(self) -> dict[str, TaskDataModule]:
        """Every entry's DataModule, in entry order; built owners of shared tokenizers first."""
        built: dict[str, dict[str, Any]] = {}  # modality -> spec of the first tokenizer built for it
        datamodules: dict[str, TaskDataModule] = {}
        order = sorted(self.entries, key=lambda name: bool(self.entries[name].get("shared")))  # owners first
        with tempfile.TemporaryDirectory(prefix="anytoken-mixture-") as tmp:
            for name in order:
                args = dict(self.entries[name].get("data_args") or {})
                if self.shards is not None:
                    args["shards"] = str(Path(self.shards) / name)
                for modality, argument in (self.entries[name].get("shared") or {}).items():
                    if modality in built:
                        args[argument] = _saved(built[modality], Path(tmp) / modality)
                dm = instantiate(self.entries[name]["datamodule"], args)
                if not isinstance(dm, TaskDataModule):
                    raise ValueError(f"task {name!r}: {type(dm).__name__} is not a TaskDataModule")
                for modality, spec in dm.vocab["tokenizers"].items():
                    built.setdefault(modality, spec)
                datamodules[name] = dm
        return {name: datamodules[name] for name in self.entries}

    @property
    def vocab(self) -> dict[str, Any]:
        """The union TokenSpace, tokenizer specs and the task entries (linked by the CLI into the model)."""
        return self._vocab

    def eval_names(self, stage: str) -> list[tuple[str, str]]:
        """``(task, split)`` of each validation (``stage`` ``"val"``) or test dataloader, in their order."""
        if stage == "val":
            return [(name, split) for name, dm in self.datamodules.items() for split in dm.val_splits]
        return [(name, split) for name, dm in self.datamodules.items() for split in dm.test_splits]

    def setup(self, stage: str) -> None:
        for dm in self.datamodules.values():
            dm.trainer = self.trainer
            dm.setup(stage)

    def train_dataloader(self) -> MixtureStream:
        loaders = {name: dm.train_dataloader() for name, dm in self.datamodules.items()}
        weights = [float(e.get("weight", 1.0)) for e in self.entries.values()]
        return MixtureStream(loaders, weights, self.tasks_per_step, self.steps_per_epoch, self.seed)

    def val_dataloader(self) -> list[DataLoader]:
        """Every task's validation dataloaders, in ``eval_names("val")`` order."""
        return [loader for dm in self.datamodules.values() for loader in dm.val_dataloader()]

    def test_dataloader(self) -> list[DataLoader]:
        """Every task's test dataloaders, in ``eval_names("test")`` order."""
        return [loader for dm in self.datamodules.values() for loader in dm.test_dataloader()]


def _saved(spec: dict[str, Any], path: Path) -> str:
    """A directory holding the tokenizer of ``spec``: its own ``path``, or ``path`` written from the spec
    (enough for tokenizers without weights, such as BPE, whose spec holds the whole vocabulary)."""
    if spec.get("path"):
        return str(spec["path"])
    if not path.exists():
        tokenizer_from_spec(spec).save_pretrained(path)
    return str(path)


def _check_entry(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` when it is a well-formed task entry (its format spec and template parse); else
    ``ValueError`` naming the task."""
    if not name.isidentifier():
        raise ValueError(f"task names must be identifiers (they name log keys), got {name!r}")
    unknown = set(entry) - ENTRY_KEYS
    if unknown or not isinstance(entry.get("datamodule"), str):
        raise ValueError(f"task {name!r}: an entry needs a datamodule class path and only the keys "
                         f"{sorted(ENTRY_KEYS)}; got {sorted(entry)}")
    if not entry.get("format") and not entry.get("template"):
        raise ValueError(f"task {name!r} needs a format (its kind and settings) or a template, or both")
    try:
        if entry.get("format"):
            build_format(entry["format"])
        if entry.get("template"):
            Template(entry["template"])
    except ValueError as err:
        raise ValueError(f"task {name!r}: {err}") from None
    if float(entry.get("weight", 1.0)) <= 0 or float(entry.get("loss_weight", 1.0)) < 0:
        raise ValueError(f"task {name!r}: weight must be > 0 and loss_weight >= 0")
    return entry
