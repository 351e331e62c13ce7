"""Table benchmark: the round-trip error of every column (share of changed categories; mean absolute error
over the fitted range of numbers) and encode/decode rows per second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anytoken.bench.media import MediaSet
from anytoken.bench.timing import best_of
from anytoken.tokenizers import TableTokenizer
from anytoken.tokenizers.table import read_table


def bench_tables(
    tokenizer: TableTokenizer | Callable[[Any], TableTokenizer], label: str, sets: list[MediaSet],
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """One row per table file. ``tokenizer`` is a fitted tokenizer, or a function fitting one to each table
    (``--tokenizer table``: the error is then the quantisation of the table's own bins)."""
    rows = []
    for media in sets:
        for path in media.files:
            frame = read_table(path)
            tok = tokenizer if isinstance(tokenizer, TableTokenizer) else tokenizer(frame)
            ids, encode_s = best_of(lambda: tok.encode(frame), repeats)
            _, decode_s = best_of(lambda: tok.decode(ids), repeats)
            errors = tok.column_errors(frame)
            worst = max(errors, key=errors.get)
            rows.append({"set": f"{media.name}/{path.stem}", "system": label, "items": len(frame),
                         "columns": frame.shape[1], "tokens_per_item": ids.shape[-1],
                         "mean_error": sum(errors.values()) / len(errors), "max_error": errors[worst],
                         "worst_column": worst, "column_errors": errors,
                         "encode_per_s": len(frame) / encode_s, "decode_per_s": len(frame) / decode_s})
    return rows
