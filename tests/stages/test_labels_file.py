"""A labels file read as a stream (issue 20, case 19): far-apart repeats still found, links
out of the folder still refused with each folder resolved once, a file changed between the
two passes refused. The scale itself: tests/test_hardening.py and benchmarks/labels_file.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augment.errors import DatasetError
from augment.model import Dataset
from augment.stages.ingest import ingest
from augment.stages.labels_file import read_labels_file
from tests.helpers import DIGITS


def _images(root: Path, count: int) -> list[str]:
    (root / "images").mkdir(parents=True)
    names = []
    for i, src in enumerate(sorted(DIGITS.rglob("*.png"))[:count]):
        (root / "images" / f"{i}.png").write_bytes(src.read_bytes())
        names.append(f"images/{i}.png")
    return names


def test_rows_listed_again_far_apart_are_found(tmp_path: Path) -> None:
    """Tens of thousands of rows between a path and its repeat (and other spellings of it)."""
    names = _images(tmp_path, 2)
    filler = [f"missing/{i}.png,x" for i in range(40_000)]
    rows = [f"{names[0]},a", f"{names[1]},b", *filler, f"./{names[0]},a", "images//1.png,c"]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    dataset = ingest(tmp_path / "labels.csv")
    assert [(o.path, o.label) for o in dataset.originals] == [(names[0], "a"), (names[1], "b")]
    reasons = {r.path: r.reason for r in dataset.rejected if not r.path.startswith("missing/")}
    assert reasons == {
        names[0]: "labels.csv line 40004: duplicate row; first row kept",
        names[1]: "labels.csv line 40005: listed again with another label ('b' first); "
        "first row kept",
    }


def test_links_are_judged_where_they_lead(tmp_path: Path) -> None:
    """A folder link inside the folder is read through; a linked file or folder leading out,
    or a loop, is refused, for every row that goes through it."""
    root = tmp_path / "data"
    names = _images(root, 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.png").write_bytes((root / names[0]).read_bytes())
    os.symlink(root / "images", root / "inside")
    os.symlink(outside, root / "out")
    os.symlink(outside / "o.png", root / "images" / "out.png")
    os.symlink(root / "loop", root / "loop")
    rows = [
        "inside/2.png,a",
        *(f"out/o.png,{i}" for i in range(3)),
        "images/out.png,a",
        "loop/x.png,a",
        f"{names[1]},b",
    ]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    dataset = ingest(root / "labels.csv")
    assert [o.path for o in dataset.originals] == ["images/1.png", "inside/2.png"]
    reasons = [(r.path, r.reason) for r in dataset.rejected]
    outside_reason = "symbolic link pointing outside the source folder"
    assert reasons == [
        ("out/o.png", outside_reason),  # the first row; the others repeat its path
        (
            "out/o.png",
            "labels.csv line 4: listed again with another label ('0' first); first row kept",
        ),
        (
            "out/o.png",
            "labels.csv line 5: listed again with another label ('0' first); first row kept",
        ),
        ("images/out.png", outside_reason),
        ("loop/x.png", "symbolic link loop"),
    ]


def test_a_labels_file_changed_between_its_two_passes_is_an_error(tmp_path: Path) -> None:
    names = _images(tmp_path, 2)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n{names[0]},a\n")
    rows = read_labels_file(labels, Dataset(root=tmp_path, kind="labels"), (None, None))
    assert len(rows) == 1
    labels.write_text(f"path,label\n{names[0]},a\n{names[1]},b\n")
    with pytest.raises(DatasetError, match="changed while it was read: run the command again"):
        list(rows)


def test_a_labels_file_that_is_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "labels.csv")
    with pytest.raises(DatasetError, match="is not a regular file"):
        read_labels_file(tmp_path / "labels.csv", Dataset(tmp_path, "labels"), (None, None))
