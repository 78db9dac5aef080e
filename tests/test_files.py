"""Atomic writes (augment/files.py write_atomic) and files written only when their bytes
change (ChangedFile)."""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import pytest

from augment.errors import OutputError
from augment.files import ChangedFile, temp_path_for, write_atomic
from augment.rerun import spill as spill


def write_in_pieces(path: Path, data: bytes, piece: int = 7) -> bool:
    file = ChangedFile(path)
    for start in range(0, len(data), piece):
        file.write(data[start : start + piece])
    return file.commit()


@pytest.mark.parametrize(
    "new",
    [
        b"line\n" * 40_000,  # the same bytes
        b"line\n" * 20_000 + b"LINE\n" + b"line\n" * 19_999,  # differs past the first chunk
        b"line\n" * 39_999,  # a prefix of the old file
        b"line\n" * 40_001,  # the old file and more
        b"",
    ],
)
def test_changed_file_writes_only_when_the_bytes_differ(tmp_path: Path, new: bytes) -> None:
    path = tmp_path / "manifest.jsonl"
    old = b"line\n" * 40_000
    path.write_bytes(old)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    written = write_in_pieces(path, new)
    assert path.read_bytes() == new
    assert written == (new != old)
    assert (path.stat().st_mtime_ns == 1_000_000_000) == (new == old)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]  # no temporary left


def test_changed_file_makes_a_new_file_and_reports_a_failed_write(tmp_path: Path) -> None:
    assert write_in_pieces(tmp_path / "new.csv", b"a,b\n") is True
    assert (tmp_path / "new.csv").read_bytes() == b"a,b\n"
    file = ChangedFile(tmp_path / "missing" / "x.csv")
    file.write(b"x")
    with pytest.raises(OutputError, match="cannot write"):
        file.commit()
    assert not (tmp_path / "missing").exists()


def test_write_atomic_makes_its_folders_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "train" / "cat" / "a.jpg"
    write_atomic(target, b"x" * 100_000)
    assert target.read_bytes() == b"x" * 100_000
    write_atomic(target, b"new")  # over an existing output: replaced whole
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["a.jpg"]


def test_write_atomic_never_writes_through_a_leftover_at_its_temporary_name(
    tmp_path: Path,
) -> None:
    """A leftover of this process id's temporary name (a killed run's, a link planted
    there) is removed, never written into or through."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    target = tmp_path / "out" / "a.jpg"
    target.parent.mkdir()
    temp_path_for(target).symlink_to(victim)
    write_atomic(target, b"image")
    assert target.read_bytes() == b"image" and not target.is_symlink()
    assert victim.read_bytes() == b"keep"
    assert os.listdir(target.parent) == ["a.jpg"]


def test_write_atomic_that_fails_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """A write cut short (here the file size limit: disk full behaves alike) raises a clear
    error; the old file is whole and no temporary is left."""
    target = tmp_path / "a.jpg"
    target.write_bytes(b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    before = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))
    try:
        with pytest.raises(OutputError, match=r"cannot write .*a\.jpg.*file size limit"):
            write_atomic(target, b"new" * 10_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, before)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.jpg"]
