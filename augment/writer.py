"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Each file is written to a hidden temporary name in its final folder, then renamed over the
final name, which POSIX makes atomic. The temporary names start with a dot so that folder
loaders (ImageFolder, imagefolder) never pick one up, and carry the process id so that two
workers never share one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TEMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


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
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


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
