"""Atomic file and directory writes: a reader never sees a half-written output.

The output policy, the same for every file anytoken writes (media, token ids, releases, tokenizers):

- Only regular files and directories are written: an existing directory where a file goes, a device,
  a FIFO or a socket is refused with ``ValueError``, and so is a symbolic link (anytoken does not write
  through links: give the link's target instead).
- Permissions follow the umask, as ``open()`` would give them (``0o666 & ~umask``, directories
  ``0o777 & ~umask``); a replaced file keeps its own mode.
- A write that fails or is interrupted (Ctrl-C, or SIGTERM once ``cleanup_on_sigterm`` is installed)
  removes its temporary file and leaves the old output untouched.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_target(path: str | os.PathLike, kind: str = "file") -> Path:
    """``path`` as a ``Path`` if a ``kind`` ("file" or "directory") may be written there; ``ValueError``
    naming the path when something else is there (a link, a device, a file for a directory, ...)."""
    target = Path(path)
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link: anytoken does not write through links; "
                         f"give its target ({os.path.realpath(target)}) instead")
    if not target.exists():
        if target.parent.exists() and not target.parent.is_dir():
            raise ValueError(f"{target}: {target.parent} is not a directory")
        return target
    mode = target.stat().st_mode
    if kind == "file" and stat.S_ISDIR(mode):
        raise ValueError(f"{target} is a directory: give a file name to write")
    if kind == "directory" and not stat.S_ISDIR(mode):
        raise ValueError(f"{target} exists and is not a directory")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(f"{target} is not a regular file (a device, FIFO or socket): refusing to replace it")
    return target


def _umask() -> int:
    mask = os.umask(0)  # the only portable read of the umask before Python 3.13 (os.getumask)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Example:
        >>> with atomic_path("out.png") as tmp:
        ...     image.save(tmp, format="PNG")
    """
    target = check_target(path, "file")
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    # keep the real suffix last so writers that infer a format from it (PIL, soundfile) still work
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``path`` as a whole if the block succeeds; what
    was written in it follows the umask (some writers, such as safetensors, create files ``0600``)."""
    target = check_target(path, "directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        mask = _umask()
        for entry in [tmp, *tmp.rglob("*")]:
            if not entry.is_symlink():
                os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~mask)
        old = target.with_name(f".{target.name}.old")  # the replaced directory, briefly
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cleanup_on_sigterm() -> None:
    """Make SIGTERM exit like Ctrl-C does (``SystemExit`` unwinds the ``finally`` blocks above, so no
    temporary file is left behind). For command-line entry points, not for library code."""

    def exit_cleanly(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_cleanly)
