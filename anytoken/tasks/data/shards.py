"""Token shards: a task's training samples tokenized once (``anytoken tokenize``) and read back by any
``TaskDataModule`` given ``shards: DIR`` (docs/data_at_scale.md).

A shard set is a folder of WebDataset-style tar files, one member ``KEY.pth`` per sample (the
DataModule's collated batch of that one sample, media already as token ids: a dict of tensors and plain
data, read with ``torch.load(weights_only=True)``, so a file never runs code), and ``index.json``:
the format version, the digest of the tokenizers that made the tokens, and per shard its file and the
byte offset and size of each member (random access, so any sampler can shuffle samples). The index is
written last and atomically: a folder without one is an unfinished ``tokenize``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from anytoken.loading import read_json
from anytoken.tasks.data.tar_members import MemberReader
from anytoken.tokenizers.base import Tokenizer
from anytoken.tokenizers.space import Vocab

SHARD_FORMAT = 1
INDEX_FILE = "index.json"
MEMBER_SUFFIX = ".pth"


def tokenizers_digest(tokenizers: dict[str, Tokenizer]) -> str:
    """A hash of each tokenizer's spec (config, and vocabulary for text) and weights, in modality order:
    what token shards and cached codes are keyed by (training-only discriminator weights left out)."""
    h = hashlib.sha256()
    for modality, tokenizer in sorted(tokenizers.items()):
        h.update(json.dumps([modality, tokenizer.spec()], sort_keys=True, default=str).encode())
        if isinstance(tokenizer, torch.nn.Module):
            for name, tensor in sorted(tokenizer.state_dict().items()):
                if not name.startswith("discriminator."):
                    h.update(name.encode())
                    h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def vocab_digest(vocab: Vocab) -> str:
    """``tokenizers_digest`` plus the rest of the vocabulary (token space, and settings stored in it such as
    ``forecast_start`` or VQA's answers): everything the stored tokens depend on besides the raw data."""
    h = hashlib.sha256(tokenizers_digest(vocab.tokenizers).encode())
    h.update(json.dumps(vocab.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def read_index(directory: str | Path, digest: str) -> dict[str, Any]:
    """The index of the finished shard set at ``directory``, checked against ``digest`` (the tokenizers of
    this run); ``ValueError`` in one line when there is none, it is unfinished, or its tokens are stale."""
    directory = Path(directory)
    path = directory / INDEX_FILE
    rerun = "run anytoken tokenize --config <this config> first"
    if not path.is_file():
        raise ValueError(f"no finished token shards at {directory} (no {INDEX_FILE}): {rerun}")
    index = read_json(path, "a token shard index")
    if not isinstance(index, dict) or index.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path} is not a token shard index of format {SHARD_FORMAT}: {rerun}")
    if index.get("digest") != digest:
        raise ValueError(f"stale token shards at {directory}: written by tokenizers {index.get('digest')}, "
                         f"this run's are {digest} (tokenizers and vocabulary); "
                         f"{rerun.replace('first', 'again')}")
    return index


def encode_record(record: dict[str, Any]) -> bytes:
    """One sample's record as the bytes of a ``.pth`` member."""
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return buffer.getvalue()


def decode_record(data: bytes, where: str) -> dict[str, Any]:
    """The record in ``data`` (tensors and plain data only); ``ValueError`` naming ``where`` otherwise."""
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises several kinds for a broken or unsafe file
        raise ValueError(f"unreadable token shard record {where}: {err}") from None


class TokenShards(Dataset):
    """The samples of a shard set, by index (``read_index``'s checks first); an item is one sample's record.

    Args:
        directory: the folder ``anytoken tokenize`` wrote.
        digest: ``tokenizers_digest`` of the tokenizers this run uses.
    """

    def __init__(self, directory: str | Path, digest: str) -> None:
        self.directory = Path(directory)
        index = read_index(self.directory, digest)
        self.locations = [(shard["file"], offset, size)
                          for shard in index["shards"] for offset, size in shard["members"]]
        missing = [s["file"] for s in index["shards"] if not (self.directory / s["file"]).is_file()]
        if missing:
            raise ValueError(f"token shards at {self.directory} lack {len(missing)} file(s): {missing[:3]}")
        self.reader = MemberReader(self.directory)

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, offset, size = self.locations[index]
        return decode_record(self.reader.read(name, offset, size), f"{index} in {self.directory / name}")


def merge_records(records: list[dict[str, Any]], index_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """One batch from one-sample records, as the DataModule's ``collate`` of those samples makes it:
    tensors concatenated on dim 0, lists joined, other values (equal in every record) kept once.

    Args:
        records: one-sample batches of the same keys.
        index_keys: key -> the key whose rows its values index (VQA's ``image_index`` into ``images``):
            each record's values are offset by the rows before it.
    """
    out: dict[str, Any] = {}
    for key, first in records[0].items():
        values = [record[key] for record in records]
        if key in (index_keys or {}):
            rows = [len(record[index_keys[key]]) for record in records]
            starts = torch.tensor([0, *rows[:-1]]).cumsum(0).tolist()
            values = [v + start for v, start in zip(values, starts)]
        if isinstance(first, torch.Tensor):
            out[key] = torch.cat(values)
        elif isinstance(first, list):
            out[key] = [v for value in values for v in value]
        elif all(v == first for v in values):
            out[key] = first
        else:
            raise ValueError(f"token shard records disagree on {key!r}, which is neither a tensor nor a list")
    return out
