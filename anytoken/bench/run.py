"""Load the tokenizers a benchmark names, give each the media sets of its modality, collect one report."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from anytoken.bench.audio import bench_audio
from anytoken.bench.bounded import bench_poses, bench_trajectories
from anytoken.bench.image import bench_images
from anytoken.bench.media import SUFFIXES, media_sets, unread_files
from anytoken.bench.report import Report
from anytoken.bench.table import bench_tables
from anytoken.bench.text import bench_text
from anytoken.bench.timing import load_average, machine
from anytoken.tokenizers import Tokenizer, tokenizer_from_spec
from anytoken.tokenizers.base import TOKENIZERS

NEEDS = {"pose": "error_bound", "trajectory": "error_bound", "table": "column_errors",
         "audio": "sample_rate"}  # what a modality's benchmark reads beyond the Tokenizer interface


def load_tokenizer(spec: str) -> tuple[str, Tokenizer | Callable[[Any], Tokenizer], str]:
    """``(label, tokenizer, modality)`` of ``spec``: a directory written by ``save_pretrained`` (an adapter's
    too), or a registered name with an optional JSON config, ``NAME[:{"key": value}]``. A name whose class
    is fitted to data (``fit``, e.g. ``table``) gives a function fitting one to each media file."""
    path = Path(spec)
    if path.is_dir():
        tokenizer = Tokenizer.from_pretrained(path)
        return "/".join(path.resolve().parts[-2:]), tokenizer, tokenizer.modality
    name, _, text = spec.partition(":")
    if name not in TOKENIZERS:
        raise ValueError(f"--tokenizer {spec!r} is neither a directory nor a registered tokenizer "
                         f"({sorted(TOKENIZERS)}, optionally NAME:JSON-config)")
    try:
        config = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--tokenizer {spec!r}: the config after ':' is not JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"--tokenizer {spec!r}: the config after ':' must be a JSON object")
    cls = TOKENIZERS[name]
    if isinstance(inspect.getattr_static(cls, "fit", None), classmethod):
        return f"{spec} (fitted per file)", lambda data: cls.fit(data, **config), cls.modality
    return spec, tokenizer_from_spec({"tokenizer": name, "config": config}), cls.modality


def _bench(modality: str, tokenizer: Any, label: str, sets: list, options: dict[str, Any]) -> list[dict]:
    repeats = options["repeats"]
    if modality == "image":
        return bench_images(tokenizer, label, sets, repeats, options["batch_size"])
    if modality == "audio":
        return bench_audio(tokenizer, label, sets, repeats, options["levels"])
    benches = {"pose": bench_poses, "trajectory": bench_trajectories, "table": bench_tables,
               "text": bench_text}
    return benches[modality](tokenizer, label, sets, repeats)


def run_bench(
    tokenizers: Sequence[str], media: Sequence[str | Path], *, repeats: int = 3, batch_size: int = 8,
    levels: list[int] | None = None, command: list[str] | None = None,
) -> Report:
    """Benchmark every tokenizer of ``tokenizers`` (see ``load_tokenizer``) on the files of its modality in
    ``media`` (files and folders; see ``media_sets``).

    Raises:
        ValueError: an unknown tokenizer, a modality without a benchmark, a tokenizer that gets no media, or a
            file named in ``media`` that no tokenizer reads.
    """
    report = Report(command or [], machine())
    loaded = [load_tokenizer(spec) for spec in tokenizers]
    for label, tokenizer, modality in loaded:
        if modality not in SUFFIXES:
            raise ValueError(f"{label}: no benchmark for {modality}; there are: {sorted(SUFFIXES)}")
        if modality in NEEDS and isinstance(tokenizer, Tokenizer) and not hasattr(tokenizer, NEEDS[modality]):
            raise ValueError(f"{label}: the {modality} benchmark needs a tokenizer with {NEEDS[modality]}")
    if unread := unread_files(media, [m for _, _, m in loaded]):
        raise ValueError(f"no tokenizer given reads {', '.join(map(str, unread))}")
    options = {"repeats": repeats, "batch_size": batch_size, "levels": levels}
    with torch.no_grad():
        for label, tokenizer, modality in loaded:
            if isinstance(tokenizer, torch.nn.Module):
                tokenizer.eval()
            sets = media_sets(media, modality)
            if not sets:
                suffixes = ", ".join(SUFFIXES[modality])
                raise ValueError(f"{label}: no {modality} files ({suffixes}) among the media")
            report.add(modality, _bench(modality, tokenizer, label, sets, options))
    report.machine["load_average_1min_end"] = load_average()
    return report
