"""Text benchmark: tokens, characters per token, whether the round trip gives the text back, throughput."""

from __future__ import annotations

from typing import Any

from anytoken.bench.media import MediaSet
from anytoken.bench.timing import best_of
from anytoken.tokenizers import Tokenizer


def bench_text(
    tokenizer: Tokenizer, label: str, sets: list[MediaSet], repeats: int = 3
) -> list[dict[str, Any]]:
    """Per set of UTF-8 ``.txt`` files, each coded line by line (empty lines skipped)."""
    rows = []
    for media in sets:
        lines = [line for p in media.files for line in p.read_text(encoding="utf-8").splitlines() if line]
        if not lines:
            raise ValueError(f"{media.name}: the .txt files hold no text")
        ids, encode_s = best_of(lambda: [tokenizer.encode(line) for line in lines], repeats)
        texts, decode_s = best_of(lambda: [tokenizer.decode(i) for i in ids], repeats)
        chars, tokens = sum(map(len, lines)), sum(i.numel() for i in ids)
        rows.append({"set": media.name, "system": label, "files": len(media.files), "lines": len(lines),
                     "items": chars, "tokens": tokens, "chars_per_token": chars / max(tokens, 1),
                     "exact": sum(t == line for t, line in zip(texts, lines)) / len(lines),
                     "encode_per_s": chars / encode_s, "decode_per_s": chars / decode_s})
    return rows
