"""``anytoken tokenize``: a config's training samples, media tokenized by its frozen tokenizers, written
once as token shards (``shards.py`` reads them).

Shard ``i`` holds samples ``[i * shard_size, (i + 1) * shard_size)``; each is written whole to a
temporary file and renamed (``atomic_path``), so a killed run leaves only finished shards, which the next
run keeps. Their names start with the run's plan (a hash of the tokenizers' digest, the sample count,
the shard size and the data settings): shards of another plan are removed, never reused. Writers are
DataLoader worker processes (``workers``); the index is written last.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from anytoken.atomic import atomic_path
from anytoken.tasks.data.base import TaskDataModule
from anytoken.tasks.data.shards import (
    INDEX_FILE,
    MEMBER_SUFFIX,
    SHARD_FORMAT,
    encode_record,
    vocab_digest,
)
from anytoken.tasks.data.tar_members import tar_members, write_tar
from anytoken.tokenizers.base import Tokenizer

MEDIA_INPUTS = {"image": "images"}  # modality -> the batch key its trainable tokenizer reads (media_ids)
ENCODE_BATCH = 64  # media encoded together


def tokenize_media(records: list[dict[str, Any]], tokenizers: dict[str, Tokenizer]) -> None:
    """Replace, in each record, the media that the model would tokenize (``MEDIA_INPUTS``, when its
    tokenizer is a trained ``nn.Module``) by its ids: ``images`` -> ``image_tokens`` ``[1, N]``."""
    for modality, key in MEDIA_INPUTS.items():
        tokenizer = tokenizers.get(modality)
        if not isinstance(tokenizer, torch.nn.Module):
            continue
        have = [r for r in records if key in r]
        for start in range(0, len(have), ENCODE_BATCH):
            chunk = have[start : start + ENCODE_BATCH]
            with torch.no_grad():
                ids = tokenizer.encode(torch.cat([r.pop(key) for r in chunk])).flatten(1)  # (b, N)
            for record, row in zip(chunk, ids):
                record[f"{modality}_tokens"] = row[None].clone()


class ShardJobs(Dataset):
    """Item ``i`` writes shard ``i`` of ``datamodule``'s training samples into ``directory`` and returns its
    sample count (a DataLoader over it runs the writers in parallel)."""

    def __init__(self, datamodule: TaskDataModule, directory: Path, plan: str, shard_size: int) -> None:
        self.datamodule, self.directory, self.plan, self.shard_size = datamodule, directory, plan, shard_size
        self.num_samples = datamodule.shard_samples()
        self.tokenizers = datamodule.vocabulary().tokenizers

    def __len__(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def name(self, shard: int) -> str:
        return f"{self.plan}-{shard:06d}.tar"

    def samples(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_samples))

    def __getitem__(self, shard: int) -> int:
        for tokenizer in self.tokenizers.values():
            if isinstance(tokenizer, torch.nn.Module):
                tokenizer.eval()
        indices = self.samples(shard)
        records = self.datamodule.shard_records(indices)
        tokenize_media(records, self.tokenizers)
        members = {f"{i:09d}{MEMBER_SUFFIX}": encode_record(r) for i, r in zip(indices, records)}
        write_tar(self.directory / self.name(shard), members)
        return len(indices)


def write_shards(datamodule: TaskDataModule, directory: str | Path, workers: int = 0, shard_size: int = 256,
                 data_key: str = "", progress: bool = True) -> dict[str, Any]:
    """Write (or finish) the token shards of ``datamodule``'s training samples in ``directory``; returns
    the index. ``workers``: writer processes (0: this one); ``data_key``: the data settings, part of the
    plan (a changed setting rewrites every shard)."""
    from tqdm import tqdm

    if shard_size < 1 or workers < 0:
        raise ValueError(f"need shard_size >= 1 and workers >= 0, got {shard_size} and {workers}")
    if datamodule.shards is not None:
        raise ValueError("the DataModule reads token shards already: build it with shards=None to write them")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / INDEX_FILE).unlink(missing_ok=True)  # unfinished until the new index is written
    digest = vocab_digest(datamodule.vocabulary())
    n = datamodule.shard_samples()
    plan = hashlib.sha256(json.dumps([digest, n, shard_size, data_key]).encode()).hexdigest()[:10]
    for old in directory.glob("*.tar"):
        if not old.name.startswith(f"{plan}-"):
            old.unlink()  # another plan's shard, or a killed writer's temporary file
    jobs = ShardJobs(datamodule, directory, plan, shard_size)
    todo = [i for i in range(len(jobs)) if not (directory / jobs.name(i)).is_file()]
    done = n - sum(len(jobs.samples(i)) for i in todo)
    loader = DataLoader(Subset(jobs, todo), batch_size=None, num_workers=workers if todo else 0)
    name = type(datamodule).__name__
    with tqdm(total=n, initial=done, unit="sample", desc=f"tokenize {name}", disable=not progress) as bar:
        for count in loader:
            bar.update(int(count))
    shards = [{"file": jobs.name(i), "members": [[offset, size] for _, offset, size in
                                                  tar_members(directory / jobs.name(i))]}
              for i in range(len(jobs))]
    index = {"format": SHARD_FORMAT, "digest": digest, "plan": plan, "datamodule": name,
             "num_samples": n, "shards": shards}
    with atomic_path(directory / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index))
    return index


def tokenize_config(config: str | Path, out: str | Path | None = None, workers: int = 0,
                    shard_size: int = 256, progress: bool = True) -> dict[str, dict[str, Any]]:
    """``anytoken tokenize``: the token shards of a training config's data (a mixture: one set per task,
    ``OUT/TASK``), written to ``out`` (default: the config's ``data.init_args.shards``, else
    ``runs/CONFIG_NAME/shards``); returns each set's index by folder."""
    import yaml

    from anytoken.tasks.data.mixture import instantiate

    section = (yaml.safe_load(Path(config).read_text()) or {}).get("data")
    if not isinstance(section, dict) or not isinstance(section.get("class_path"), str):
        raise ValueError(f"{config}: no data section with a class_path (a training config is needed)")
    args = dict(section.get("init_args") or {})
    target = Path(out or args.pop("shards", None) or Path("runs") / Path(config).stem / "shards")
    args.pop("shards", None)
    datamodule = instantiate(section["class_path"], args)
    parts = getattr(datamodule, "datamodules", None)
    if parts is None and not isinstance(datamodule, TaskDataModule):
        raise ValueError(f"{config}: {type(datamodule).__name__} has no task samples to tokenize")
    if parts is None:
        parts, keys = {"": datamodule}, {"": args}
    else:
        keys = {name: entry.get("data_args") for name, entry in datamodule.entries.items()}
    written = {}
    for name, part in parts.items():
        folder = target / name if name else target
        data_key = json.dumps(keys[name], sort_keys=True, default=str)
        written[str(folder)] = write_shards(part, folder, workers, shard_size, data_key, progress)
    return written
