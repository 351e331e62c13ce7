"""Audio benchmark: SI-SNR, multi-scale mel distance, PESQ and STOI (16 kHz), kbps, tokens/s, codebook
usage and the real-time factor of encode + decode; peers Opus and Codec2 at the nearest bitrates, mu-law."""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np
import torch

from anytoken.bench.audio_peers import peer_outputs
from anytoken.bench.codes import bits_per_token, usage
from anytoken.bench.media import MediaSet
from anytoken.bench.timing import best_of
from anytoken.tasks.metrics.audio import mel_distance, pesq_wb, si_snr, stoi
from anytoken.tokenizers import Tokenizer

PEERS = ("Opus", "Codec2", "mu-law")
PERCEPTUAL = {"pesq": (pesq_wb, "pesq"), "stoi": (stoi, "pystoi")}  # metric -> (function, package)


def scores(refs: list[torch.Tensor], outs: list[torch.Tensor], rate: int) -> dict[str, Any]:
    """Mean SI-SNR, mel distance, PESQ and STOI of decoded clips against their references ``[C, T]``; a metric
    whose package is missing is marked missing, clips PESQ cannot score are counted out."""
    row: dict[str, Any] = {
        "si_snr_db": float(np.mean([si_snr(r, o) for r, o in zip(refs, outs)])),
        "mel_distance": float(np.mean([mel_distance(r, o, rate) for r, o in zip(refs, outs)])),
    }
    for key, (metric, package) in PERCEPTUAL.items():
        if importlib.util.find_spec(package) is None:
            row.setdefault("missing", {})[key] = f"pip install {package}"
            continue
        values = []
        for ref, out in zip(refs, outs):
            try:
                values.append(metric(ref, out, rate))
            except ValueError:  # PESQ finds no speech in a clip
                continue
        row[key] = float(np.mean(values)) if values else None
        if len(values) < len(refs):
            row[f"{key}_clips"] = len(values)
    return row


def tokenizer_row(tokenizer: Tokenizer, clips: list[torch.Tensor], repeats: int) -> dict[str, Any]:
    """Round trip of ``clips`` ``[C, T_i]`` at the tokenizer's rate, one clip at a time."""
    rate = tokenizer.sample_rate
    ids, encode_s = best_of(lambda: [tokenizer.encode(c[None]) for c in clips], repeats)
    outs, decode_s = best_of(lambda: [tokenizer.decode(i)[0].float().cpu() for i in ids], repeats)
    seconds = sum(c.shape[-1] for c in clips) / rate
    if all(hasattr(tokenizer, a) for a in ("frame_rate", "num_codebooks")):  # the declared rate
        tokens_per_s = float(tokenizer.frame_rate * tokenizer.num_codebooks)
    else:  # measured from what encode gave
        tokens_per_s = sum(i.numel() for i in ids) / seconds
    return {"tokens_per_s": tokens_per_s, "kbps": tokens_per_s * bits_per_token(tokenizer) / 1000,
            **scores(clips, outs, rate), **usage(tokenizer, ids),
            "x_real_time": seconds / (encode_s + decode_s), "encode_per_s": seconds / encode_s,
            "decode_per_s": seconds / decode_s}


def _levels(tokenizer: Tokenizer, levels: list[int] | None) -> list[int | None]:
    """Codebook levels to score: those of ``levels`` the tokenizer can emit (``levels()`` where it lists
    them, else up to its own), where it can drop levels; ``[None]``: as it is."""
    if not levels or not hasattr(tokenizer, "with_codebooks"):
        return [None]
    own = tokenizer.levels() if hasattr(tokenizer, "levels") else range(1, tokenizer.num_codebooks + 1)
    return [k for k in levels if k in own] or [None]


def bench_audio(
    tokenizer: Tokenizer, label: str, sets: list[MediaSet], repeats: int = 3, levels: list[int] | None = None
) -> list[dict[str, Any]]:
    """Per set: a row per codebook level count (``levels``: tokenizers with ``with_codebooks``), then the
    peers at each distinct bitrate (``Report.add`` drops a peer row already reported)."""
    rows, rate, own = [], tokenizer.sample_rate, getattr(tokenizer, "num_codebooks", None)
    for media in sets:
        clips = [tokenizer.read_media(p)[0].float().cpu() for p in media.files]  # (C, T_i) each
        head = {"set": media.name, "files": len(media.files), "sample_rate": rate,
                "seconds": sum(c.shape[-1] for c in clips) / rate}
        mine = []
        for k in _levels(tokenizer, levels):
            if k is not None:
                tokenizer.with_codebooks(k)
            system = label if k is None else f"{label} ({k} levels)"
            mine.append(head | {"system": system} | tokenizer_row(tokenizer, clips, repeats))
        if own is not None and hasattr(tokenizer, "with_codebooks"):
            tokenizer.with_codebooks(own)
        rows += mine
        bitrates = sorted({round(row["kbps"], 3) for row in mine if math.isfinite(row["kbps"])})
        for peer, kbps in ((peer, kbps) for peer in PEERS for kbps in bitrates):
            row, outs = peer_outputs(peer, kbps, clips, rate)
            scored = {} if outs is None else scores(clips, outs, rate)
            rows.append(head | row | scored | {"peer_key": (media.name, row["system"], rate)})
    return rows
