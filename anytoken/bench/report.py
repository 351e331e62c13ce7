"""The one report format: per media kind, a table of rows (the tokenizers', then the peers'), printed as
Markdown and written as JSON with every figure (more than the printed columns)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anytoken.atomic import atomic_path


@dataclass(frozen=True)
class Column:
    """One printed column: the row key, its header and the format of numbers (``format`` spec)."""

    key: str
    header: str
    fmt: str = ""


_HEAD = (Column("set", "set"), Column("system", "system"))
_SPEED = (Column("encode_per_s", "encode {unit}/s", ".1f"), Column("decode_per_s", "decode {unit}/s", ".1f"))
_BOUND = (Column("max_error", "max err", ".4g"), Column("mean_error", "mean err", ".4g"),
          Column("bound", "bound", ".4g"), Column("within_bound", "within bound"))
COLUMNS: dict[str, tuple[Column, ...]] = {
    "image": (*_HEAD, Column("tokens_per_item", "tokens/image", "d"), Column("bits_per_pixel", "bpp", ".3f"),
              Column("psnr", "PSNR dB", ".2f"), Column("ssim", "SSIM", ".3f"),
              Column("codebook_usage", "usage", ".1%"), Column("perplexity", "perplexity", ".0f"), *_SPEED),
    "audio": (*_HEAD, Column("kbps", "kbps", ".2f"), Column("tokens_per_s", "tokens/s", ".0f"),
              Column("si_snr_db", "SI-SNR dB", ".2f"), Column("mel_distance", "mel dist", ".3f"),
              Column("pesq", "PESQ", ".2f"), Column("stoi", "STOI", ".3f"),
              Column("codebook_usage", "usage", ".1%"), Column("x_real_time", "x real time", ".1f")),
    "pose": (*_HEAD, Column("items", "poses", "d"), Column("tokens_per_item", "tokens/pose", "d"), *_BOUND,
             *_SPEED),
    "trajectory": (*_HEAD, Column("items", "steps", "d"), *_BOUND, *_SPEED),
    "table": (*_HEAD, Column("items", "rows", "d"), Column("columns", "columns", "d"),
              Column("tokens_per_item", "tokens/row", "d"), Column("mean_error", "mean column err", ".4f"),
              Column("max_error", "worst column err", ".4f"), Column("worst_column", "worst column"),
              *_SPEED),
    "text": (*_HEAD, Column("items", "chars", "d"), Column("tokens", "tokens", "d"),
             Column("chars_per_token", "chars/token", ".2f"), Column("exact", "exact round trip", ".1%"),
             *_SPEED),
}
UNITS = {"image": "images", "audio": "s", "pose": "poses", "trajectory": "steps", "table": "rows",
         "text": "chars"}


def cell(row: dict[str, Any], column: Column) -> str:
    """One printed cell: "missing" for a metric whose package or tool is missing, "-" for none."""
    if column.key in row.get("missing", {}):
        return "missing"
    value = row.get(column.key)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and column.fmt:
        return format(value, column.fmt)
    return str(value)


def by_set(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` grouped by set (in order of first appearance), each group in its original order."""
    first: dict[str, int] = {}
    for row in rows:
        first.setdefault(row["set"], len(first))
    return sorted(rows, key=lambda row: first[row["set"]])


@dataclass
class Report:
    """A run: ``tables`` maps a media kind to its rows; ``machine`` and ``command`` say where and how."""

    command: list[str]
    machine: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _peers: set[tuple[Any, ...]] = field(default_factory=set, repr=False)

    def add(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to the table of ``kind`` (one of ``COLUMNS``); a row with a ``peer_key`` already
        seen (the same peer on the same set, asked for by another tokenizer) is dropped."""
        if kind not in COLUMNS:
            raise ValueError(f"no report columns for media kind {kind!r}; known: {sorted(COLUMNS)}")
        table = self.tables.setdefault(kind, [])
        for row in rows:
            key = row.pop("peer_key", None)
            if key is not None and (kind, *key) in self._peers:
                continue
            table.append(row)
            if key is not None:
                self._peers.add((kind, *key))

    def format(self) -> str:
        """One Markdown table per media kind; each row's note (a missing peer, a skipped metric) under it."""
        parts = []
        for kind, rows in self.tables.items():
            columns = COLUMNS[kind]
            headers = [c.header.format(unit=UNITS[kind]) for c in columns]
            lines = [f"{kind}:", "", "| " + " | ".join(headers) + " |",
                     "|" + "|".join("---" if i < 2 else "---:" for i in range(len(columns))) + "|"]
            rows = by_set(rows)
            lines += ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
            notes = [f"- {row['set']} / {row['system']}: {row['note']}" for row in rows if row.get("note")]
            parts.append("\n".join(lines + ([""] + notes if notes else [])))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, JSON-serialisable."""
        return {"command": self.command, "machine": self.machine,
                "tables": {kind: {"columns": [c.key for c in COLUMNS[kind]], "rows": by_set(rows)}
                           for kind, rows in self.tables.items()}}

    def write_json(self, path: str | Path) -> None:
        """Write ``to_dict()`` to ``path`` atomically (its folder is created)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, default=float) + "\n")
