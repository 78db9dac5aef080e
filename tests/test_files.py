"""Files written only when their bytes change (augment/files.py ChangedFile)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augment.errors import OutputError
from augment.files import ChangedFile
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
