"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each file is written to a hidden temporary name in its final folder, then renamed over the
final name, which POSIX makes atomic. The temporary names start with a dot so that folder
loaders (ImageFolder, imagefolder) never pick one up, and carry the process id so that two
workers never share one.

A write that fails (disk full, permission denied, file too large) removes its temporary and
raises `OutputError` naming the file and the cause: the run stops with a clear message, no
partial file is visible, and rerunning the same command once the cause is fixed resumes.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from augment.errors import OutputError

TEMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file size limit was reached",
    errno.EACCES: "the output folder is not writable",
    errno.EPERM: "the output folder is not writable",
    errno.EROFS: "the output is on a read-only file system",
}


def output_error(path: Path, exc: OSError, doing: str = "write") -> OutputError:
    """A failed write as a message a user can act on; rerunning resumes once it is fixed."""
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0)
    return OutputError(
        f"cannot {doing} {path}: {cause}"
        + (f" ({hint})" if hint else "")
        + "; nothing partial was kept: fix the cause and rerun the same command to resume"
    )


def write_atomic(path: Path, data: bytes) -> None:
    tmp = temp_path_for(path)
    try:
        try:
            f = tmp.open("wb")
        except FileNotFoundError:
            # Folders are made on the first write into them, not checked on every write.
            path.parent.mkdir(parents=True, exist_ok=True)
            f = tmp.open("wb")
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly `data`; True if written.

    A rerun that changes nothing must leave every file untouched, mtime included, or
    every tool that watches mtimes (make, rsync, a trainer's cache) would see a change.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, data)
    return True


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARK in path.name


def remove_temp_files(folder: Path) -> int:
    """Remove temporaries an interrupted run left behind; returns how many."""
    removed = 0
    if not folder.exists():
        return 0
    for path in folder.rglob(f".*{TEMP_MARK}*"):
        if path.is_file() and is_temp_file(path):
            path.unlink()
            removed += 1
    return removed
