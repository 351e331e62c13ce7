"""The interface every modality tokenizer implements, its output grammar, and the tokenizer registry."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from anytoken.atomic import atomic_directory, atomic_path
from anytoken.loading import LoadError, load_weights, read_json
from anytoken.registry import Registry

FORMAT_VERSION = 1
CONFIG_FILE = "tokenizer_config.json"
WEIGHTS_FILE = "model.safetensors"

Interval = tuple[int, int]  # half-open [lo, hi) range of local ids


class MediaWarning(UserWarning):
    """Input that a tokenizer's policy accepts after changing it (clamped samples) or that is suspect
    (silence). ``warnings.simplefilter("error", MediaWarning)`` (the CLI's ``--strict``) refuses it."""


@dataclass(frozen=True)
class SegmentGrammar:
    """What a well-formed segment of one tokenizer's local ids looks like (constrained decoding enforces it).

    Position ``i`` may hold any local id inside one of the intervals ``steps[i % len(steps)]``. The segment
    may end after ``n`` tokens when ``n >= min_length`` and ``n % len(steps) == 0``, and must end when
    ``n == max_length``. E.g. a pose is the x-bins step then the y-bins step, exactly ``2 * K`` tokens.
    """

    steps: tuple[tuple[Interval, ...], ...]
    min_length: int = 1
    max_length: int | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(not step for step in self.steps):
            raise ValueError("SegmentGrammar needs at least one step, each with at least one interval")
        if any(lo < 0 or hi <= lo for step in self.steps for lo, hi in step):
            raise ValueError(f"SegmentGrammar intervals must be non-empty [lo, hi), lo >= 0: {self.steps}")
        if self.min_length < 0 or (self.max_length is not None and self.max_length < self.min_length):
            raise ValueError(f"bad grammar lengths: min {self.min_length}, max {self.max_length}")

    @classmethod
    def fixed(cls, vocab_size: int, length: int) -> SegmentGrammar:
        """Exactly ``length`` ids, each any id of ``[0, vocab_size)`` (an image grid, an audio frame)."""
        return cls(steps=(((0, vocab_size),),), min_length=length, max_length=length)

    @classmethod
    def open_ended(
        cls, vocab_size: int, min_length: int = 1, max_length: int | None = None
    ) -> SegmentGrammar:
        """Any number of ids from ``[0, vocab_size)`` until the segment's end marker (text)."""
        return cls(steps=(((0, vocab_size),),), min_length=min_length, max_length=max_length)


class Tokenizer(abc.ABC):
    """Encodes one modality into local integer ids ``[0, vocab_size)`` and decodes them back.

    Subclasses set ``name`` (their registry key), implement ``vocab_size``, ``encode``, ``decode``,
    ``config`` (JSON-serialisable constructor arguments) and, when they hold state beyond the config,
    ``_save_state``/``_load_state``. Trainable tokenizers are also ``nn.Module``s with a ``loss(x)``.
    ``encode``/``decode`` validate their input and raise ``ValueError`` naming the problem.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    write_suffixes: ClassVar[tuple[str, ...]] = ()  # file suffixes ``write_media`` writes (first: default)

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of local ids; every id produced by ``encode`` is in ``[0, vocab_size)``."""

    @abc.abstractmethod
    def encode(self, x: Any) -> torch.Tensor:
        """Encode media into a ``torch.long`` tensor of local ids."""

    @abc.abstractmethod
    def decode(self, ids: torch.Tensor) -> Any:
        """Decode local ids back into media."""

    def grammar(self) -> SegmentGrammar:
        """The shape of a well-formed segment; by default any ids until the end marker."""
        return SegmentGrammar.open_ended(self.vocab_size)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (state such as vocabularies goes to ``_save_state``)."""
        return {}

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description that ``tokenizer_from_spec`` rebuilds (stored in model hparams)."""
        return {"tokenizer": self.name, "config": self.config()}

    def reconstruction_error(self, x: Any) -> float:
        """Error of ``decode(encode(x))`` against ``x`` in the modality's own metric (0.0 when lossless)."""
        raise NotImplementedError(f"{type(self).__name__} does not define a reconstruction error")

    def check_ids(self, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Return ``ids`` as a long tensor, raising ``ValueError`` for non-integers or out-of-range ids."""
        ids = torch.as_tensor(ids)
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"{self.name}: token ids must be integers, got dtype {ids.dtype}")
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"{self.name}: token ids must lie in [0, {self.vocab_size}), got min {int(ids.min())} "
                f"and max {int(ids.max())}"
            )
        return ids

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``tokenizer_config.json`` (+ state files) to ``directory`` atomically."""
        with atomic_directory(directory) as tmp:
            self._save_state(tmp)
            meta = {"format_version": FORMAT_VERSION, "tokenizer": self.name, "config": self.config()}
            (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    def _save_state(self, directory: Path) -> None:
        """Write state beyond ``config()`` into ``directory``: weights of ``nn.Module`` tokenizers."""
        if isinstance(self, torch.nn.Module):
            from safetensors.torch import save_model

            save_model(self, str(directory / WEIGHTS_FILE))

    def _load_state(self, directory: Path) -> None:
        """Read what ``_save_state`` wrote (``LoadError`` naming the file when it does not fit)."""
        if isinstance(self, torch.nn.Module):
            load_weights(self, directory / WEIGHTS_FILE)
            self.eval()

    def read_media(self, path: Path) -> Any:
        """Read one media file into what ``encode`` takes (used by ``anytoken encode``)."""
        raise NotImplementedError(f"{self.name} cannot read media files")

    def write_media(self, media: Any, path: Path) -> None:
        """Write what ``decode`` returns to ``path`` in the format of its suffix (one of
        ``write_suffixes``); ``save_media`` checks the suffix and makes the write atomic."""
        raise NotImplementedError(f"{self.name} cannot write media files")

    def save_media(self, media: Any, path: str | Path) -> None:
        """Write ``media`` to ``path`` atomically in the format its suffix names (``ValueError`` naming
        ``path`` for a suffix this tokenizer cannot write, or for a target that is not a regular file)."""
        with atomic_path(self.check_output(path)) as tmp:
            self.write_media(media, tmp)

    def check_output(self, path: str | Path) -> Path:
        """``path`` as a ``Path`` if ``write_media`` can write its suffix, else ``ValueError`` naming it."""
        path = Path(path)
        if not self.write_suffixes:
            raise NotImplementedError(f"{self.name} cannot write media files")
        if path.suffix.lower() not in self.write_suffixes:
            raise ValueError(f"{path}: {self.name} writes {', '.join(self.write_suffixes)} files, "
                             f"not {path.suffix or 'a name without a suffix'}")
        return path

    def encode_file(self, path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
        """A media file -> ``(ids, header)``; the header (JSON-able, empty for most tokenizers) holds what
        ``decode_file`` needs beyond the ids, e.g. a trajectory's agents and start positions."""
        return self.encode(self.read_media(Path(path))), {}

    def decode_file(self, ids: torch.Tensor, path: str | Path, header: dict[str, Any] | None = None) -> None:
        """Token ids (and ``encode_file``'s header) -> the media file ``path`` (see ``save_media``)."""
        self.save_media(self.decode(ids), path)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Tokenizer:
        """Load a tokenizer saved by ``save_pretrained`` (of this class or, from the base, of any class), or
        one that ``FOREIGN_DIRECTORIES`` builds from another library's directory (a Hugging Face model's
        ``config.json`` + ``model.safetensors``: ``anytoken.tokenizers.pretrained``)."""
        directory = Path(directory)
        foreign = [load for marker, load in FOREIGN_DIRECTORIES.items() if (directory / marker).is_file()]
        if foreign and not (directory / CONFIG_FILE).is_file():
            tokenizer = foreign[0](directory)
        else:
            tokenizer = _load_saved(directory)
        if cls is not Tokenizer and not isinstance(tokenizer, cls):
            raise LoadError(f"{directory} holds a {type(tokenizer).__name__}, not a {cls.__name__}")
        return tokenizer


def _load_saved(directory: Path) -> Tokenizer:
    """The tokenizer ``save_pretrained`` wrote to ``directory``, its state loaded."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        others = "".join(f" nor a directory with {marker}" for marker in FOREIGN_DIRECTORIES)
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}: not a saved anytoken tokenizer{others}")
    meta = read_json(path, "a saved tokenizer")
    if meta.get("format_version") != FORMAT_VERSION:
        raise LoadError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    try:
        tokenizer = tokenizer_from_spec(meta)
    except (TypeError, ValueError) as err:  # unknown name, unknown key, value of the wrong type
        raise LoadError(f"{path}: cannot build the tokenizer ({err})") from None
    tokenizer._load_state(directory)
    return tokenizer


TOKENIZERS = Registry("tokenizer", "name")
register_tokenizer = TOKENIZERS.register  # class decorator: the tokenizer under ``cls.name``
# a file only another library's directories hold -> the loader of such a directory (filled by the modules
# that adapt them: anytoken.tokenizers.pretrained adds "config.json", Hugging Face model directories)
FOREIGN_DIRECTORIES: dict[str, Callable[[Path], Tokenizer]] = {}


def create_tokenizer(name: str, **kwargs: Any) -> Tokenizer:
    """Build a registered tokenizer by name, e.g. ``create_tokenizer("clip_bpe")``."""
    return TOKENIZERS.lookup(name)(**kwargs)


def tokenizer_from_spec(spec: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from ``Tokenizer.spec()`` (weights of trainable ones come from the model).

    Raises:
        ValueError: an unknown tokenizer name, or a config with unknown keys or values of the wrong type.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("tokenizer"), str):
        raise ValueError(f"a tokenizer spec is a dict with keys 'tokenizer' and 'config', got {spec!r:.200}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"tokenizer {spec['tokenizer']!r}: its config must be a dict, got {config!r:.200}")
    try:
        return create_tokenizer(spec["tokenizer"], **config)
    except TypeError as err:  # an unknown key or a value the constructor cannot take
        raise ValueError(f"tokenizer {spec['tokenizer']!r}: bad config ({err})") from None
