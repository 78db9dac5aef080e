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
import shutil
from pathlib import Path
from typing import BinaryIO

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


class ChangedFile:
    """A file written atomically unless it already holds exactly the bytes given: a rerun
    that changes nothing must leave every file untouched, mtime included, or every tool that
    watches mtimes (make, rsync, a trainer's cache) would see a change.

    The content comes a piece at a time (a manifest of any size is never held whole): the
    pieces are compared with the file as they come, and written to a temporary from the
    first difference on. `commit()` renames it into place, or leaves the file as it was.

    `temp` names the temporary (on the same file system) when it must not be in the file's
    folder; it must be a name `remove_temp_files` recognises.
    """

    _CHUNK = 1 << 16

    def __init__(self, path: Path, temp: Path | None = None) -> None:
        self.path = path
        self._tmp_path = temp_path_for(path) if temp is None else temp
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._matched = 0  # leading bytes known to equal the old file's
        self._tmp: BinaryIO | None = None
        self._old: BinaryIO | None = None
        with contextlib.suppress(OSError):
            self._old = path.open("rb")

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= self._CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        try:
            if self._tmp is None and self._old is not None and self._old.read(len(data)) == data:
                self._matched += len(data)
                return
            (self._tmp or self._start_temp()).write(data)
        except OSError as exc:
            self.discard()
            raise output_error(self.path, exc) from exc

    def _start_temp(self) -> BinaryIO:
        """From the first difference on: the bytes that matched, copied, then the rest."""
        self._tmp = self._tmp_path.open("wb")
        if self._matched and self._old is not None:
            self._old.seek(0)
            shutil.copyfileobj(_Prefix(self._old, self._matched), self._tmp)
        return self._tmp

    def commit(self) -> bool:
        """Put the content in place; True if the file was (re)written."""
        self._flush()
        try:
            if self._tmp is None and self._old is not None and not self._old.read(1):
                self.discard()
                return False
            # Different, shorter than the old file, or no file yet.
            (self._tmp or self._start_temp()).close()
            os.replace(self._tmp_path, self.path)
        except OSError as exc:
            self.discard()
            raise output_error(self.path, exc) from exc
        self._tmp = None
        self.discard()
        return True

    def discard(self) -> None:
        """Leave the file as it was (unless committed) and remove the temporary."""
        if self._old is not None:
            self._old.close()
        if self._tmp is not None:
            self._tmp.close()
            with contextlib.suppress(OSError):
                self._tmp_path.unlink()
            self._tmp = None


class _Prefix:
    """The first `size` bytes of a file, as a file to copy from."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle = handle
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._handle.read(n)
        self._left -= len(data)
        return data


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
