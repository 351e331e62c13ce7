"""Which media files a benchmark reads: sets of files of one modality, from files and folders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anytoken.tasks.data.images_folder import IMAGE_SUFFIXES
from anytoken.tokenizers.audio_io import AUDIO_SUFFIXES
from anytoken.tokenizers.table import TABLE_SUFFIXES
from anytoken.tokenizers.trajectory_csv import COLUMNS as TRAJECTORY_COLUMNS

SUFFIXES: dict[str, tuple[str, ...]] = {  # modality -> the files its benchmark reads
    "image": IMAGE_SUFFIXES,
    "audio": AUDIO_SUFFIXES,
    "pose": (".json",),  # COCO keypoints annotation files
    "trajectory": (".csv",),  # scene,agent,t,x,y files
    "table": TABLE_SUFFIXES,  # other than trajectory files
    "text": (".txt",),
}


def is_trajectory_csv(path: Path) -> bool:
    """Whether ``path`` is a CSV file whose header has the trajectory columns (scene, agent, t, x, y)."""
    if path.suffix.lower() != ".csv":
        return False
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = {name.strip() for name in f.readline().split(",")}
    return set(TRAJECTORY_COLUMNS) <= header


def reads(modality: str, path: Path) -> bool:
    """Whether ``modality``'s benchmark reads ``path``: by its suffix, a CSV file by its header (trajectory
    columns: a trajectory; others: a table)."""
    if path.suffix.lower() not in SUFFIXES[modality]:
        return False
    if modality in ("trajectory", "table"):
        return is_trajectory_csv(path) == (modality == "trajectory")
    return True


@dataclass(frozen=True)
class MediaSet:
    """Files benchmarked together: a folder's files, or the files named directly that share a folder."""

    name: str
    files: tuple[Path, ...]


def media_sets(paths: Sequence[str | Path], modality: str) -> list[MediaSet]:
    """The sets of ``modality``'s files among ``paths``: a folder (searched recursively) is one set named
    after it, files named directly form one set per parent folder. Sets without such files are left out.

    Raises:
        ValueError: a path that does not exist, or an unknown modality.
    """
    if modality not in SUFFIXES:
        raise ValueError(f"no benchmark for modality {modality!r}; benchmarked: {sorted(SUFFIXES)}")
    sets: dict[str, list[Path]] = {}
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and reads(modality, p))
            name = path.resolve().name
        elif path.is_file():
            found = [path] if reads(modality, path) else []
            name = path.resolve().parent.name
        else:
            raise ValueError(f"media not found: {path}")
        if found:
            sets.setdefault(name, []).extend(p for p in found if p not in sets.get(name, []))
    return [MediaSet(name, tuple(files)) for name, files in sets.items()]


def unread_files(paths: Sequence[str | Path], modalities: Sequence[str]) -> list[Path]:
    """Files named directly in ``paths`` that none of ``modalities`` reads (a mistake worth an error)."""
    files = [Path(p) for p in paths if Path(p).is_file()]
    return [p for p in files if not any(m in SUFFIXES and reads(m, p) for m in modalities)]
