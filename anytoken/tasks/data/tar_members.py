"""Tar files (token shards, WebDataset image-text shards): written atomically; read with random access:
list the members once, then read any member by its byte offset, each process with its own file handles
(DataLoader workers)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

from anytoken.atomic import atomic_path

Member = tuple[str, int, int]  # (name inside the tar, byte offset of its data, size)


def write_tar(path: str | Path, members: dict[str, bytes]) -> None:
    """A tar file of ``members`` (name -> bytes, in order), written whole or not at all (``atomic_path``)."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def tar_members(path: str | Path) -> list[Member]:
    """The regular-file members of the tar file ``path``, in order; ``ValueError`` when it is no tar."""
    try:
        with tarfile.open(path, "r:") as tar:
            return [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"not a readable (uncompressed) tar file: {path} ({err})") from None


class MemberReader:
    """Reads ``size`` bytes at ``offset`` of files under ``root``, keeping one handle per file and process."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._files: dict[str, Any] = {}
        self._pid = os.getpid()

    def read(self, file: str, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():  # a DataLoader worker: open files of its own
            self._files, self._pid = {}, os.getpid()
        if file not in self._files:
            self._files[file] = open(self.root / file, "rb")  # noqa: SIM115 - kept open while reading
        handle = self._files[file]
        handle.seek(offset)
        return handle.read(size)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}
