"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each file is written to a hidden temporary name in its final folder, then renamed over the
final name, which POSIX makes atomic. The temporary names start with a dot so that folder
loaders (ImageFolder, imagefolder) never pick one up, carry the process id so that two
workers never share one, and a mark no user's file plausibly has (`.a.jpg.augment-tmp-123`):
only such names, in the folders augment writes, are ever removed as leftovers. A temporary
is opened without following a link and never over an existing file.

The source is never written, whatever its paths look like: a bind mount or a link gives one
folder two unrelated paths, so OUT and each folder a run writes into are compared with the
source's folders by device and inode (`source_folders`, `check_write_folders`).

A write that fails (disk full, permission denied, file too large) removes its temporary and
raises `OutputError` naming the file and the cause: the run stops with a clear message, no
partial file is visible, and rerunning the same command once the cause is fixed resumes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from augment.errors import OutputError

TEMP_MARK = ".augment-tmp-"
_TEMP_NAME = re.compile(r"\..+\.augment-tmp-[0-9]+")
FolderId = tuple[int, int]  # (st_dev, st_ino): one folder, by whatever path it is reached


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_temp_fd(tmp: str) -> int:
    """A new temporary: never through a link (O_NOFOLLOW), never an existing file (O_EXCL;
    a leftover of this same name, which only this process id could own, is removed first).
    The leftover is looked for only when the name is taken: a call per write is saved."""
    try:
        return os.open(tmp, _TEMP_FLAGS, 0o666)
    except FileExistsError:
        os.unlink(tmp)
        return os.open(tmp, _TEMP_FLAGS, 0o666)


def _open_temp(tmp: Path) -> BinaryIO:
    return os.fdopen(_open_temp_fd(os.fspath(tmp)), "wb")


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


def write_atomic(path: Path | str, data: bytes) -> None:
    # The hot path of a run (a call per output): plain strings and file descriptors, no
    # pathlib objects or buffered file, the same calls otherwise (open, write, close, rename).
    target = os.fspath(path)
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}{TEMP_MARK}{os.getpid()}")  # temp_path_for's name
    try:
        try:
            fd = _open_temp_fd(tmp)
        except FileNotFoundError:
            # Folders are made on the first write into them, not checked on every write.
            Path(folder or ".").mkdir(parents=True, exist_ok=True)
            fd = _open_temp_fd(tmp)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise output_error(Path(path), exc) from exc
        raise


def open_temp(path: Path) -> BinaryIO:
    """The temporary `path` is written through (folders made as needed); the caller renames
    `temp_path_for(path)` over `path` when it is complete."""
    try:
        return _open_temp(temp_path_for(path))
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _open_temp(temp_path_for(path))


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
        self._tmp = _open_temp(self._tmp_path)
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
    return _TEMP_NAME.fullmatch(path.name) is not None


def remove_temp_files(folder: Path, own: Iterable[str] | None = None) -> int:
    """Remove temporaries an interrupted run left behind; returns how many. Only in the
    folders augment writes: `folder` itself and, under it, the `own` folders (all of it if
    None), links never followed; a user's file is never taken for one (see the top)."""
    removed = 0
    if not folder.is_dir():
        return 0
    tops = [folder] if own is None else [folder / name for name in own]
    for name in os.listdir(folder) if own is not None else ():
        if _TEMP_NAME.fullmatch(name) and os.path.isfile(folder / name):
            os.unlink(folder / name)
            removed += 1
    for top in tops:
        for parent, _, names in os.walk(top):  # followlinks=False
            for name in names:
                path = os.path.join(parent, name)
                if _TEMP_NAME.fullmatch(name) and stat.S_ISREG(os.lstat(path).st_mode):
                    os.unlink(path)
                    removed += 1
    return removed


def source_folders(root: Path) -> frozenset[FolderId]:
    """The identity of `root` and of every folder under it (hidden ones too; links not
    followed, as the source walk never follows them)."""
    found: set[FolderId] = set()
    try:
        st = os.stat(root)
    except OSError:
        return frozenset()
    found.add((st.st_dev, st.st_ino))
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        found.add((st.st_dev, st.st_ino))
                        stack.append(entry.path)
        except OSError:
            continue  # a folder the walk cannot list is one ingest cannot read either
    return frozenset(found)


def source_folder_of(path: Path, folders: frozenset[FolderId]) -> Path | None:
    """The first of `path` and its existing ancestors that is one of `folders` (a bind
    mount or a link into the source shows up here, whatever the path says), or None."""
    for candidate in [path, *path.parents]:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in folders:
            return candidate
    return None


def check_write_folders(
    out: Path, folders: Iterable[str], source: frozenset[FolderId], src: Path
) -> None:
    """Before a run writes: each existing folder on the way from OUT to each of `folders`
    (relative to OUT) must be a real folder, not a link (a write would follow it, maybe into
    the source), and none may be one of the `source` folders (a bind mount)."""
    seen: set[str] = set()
    for rel in folders:
        parts = Path(rel).parts
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if sub in seen:
                continue
            seen.add(sub)
            try:
                st = os.lstat(out / sub)
            except FileNotFoundError:
                break  # made by the run itself, from here down
            except OSError as exc:
                raise output_error(out / sub, exc, "check the output folder") from exc
            if stat.S_ISLNK(st.st_mode):
                raise OutputError(
                    f"output folder {out / sub} is a symbolic link; augment never writes "
                    "through a link (it could lead into the source): replace it with a folder"
                )
            if (st.st_dev, st.st_ino) in source:
                raise OutputError(
                    f"output folder {out / sub} is a folder of the source {src} (the same "
                    "device and inode: a bind mount); choose an output outside the source"
                )
