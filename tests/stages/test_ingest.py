"""Reading sources: class folders and labels files (decoding odd modes and EXIF orientation:
tests/imaging/test_codec.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augment.errors import DatasetError
from augment.stages.ingest import ingest
from tests.helpers import DIGITS, TEXTURES


def test_class_folders() -> None:
    dataset = ingest(TEXTURES)
    assert dataset.classes == ["brick", "deep_space", "grass", "gravel", "histology"]
    assert len(dataset.originals) == 50 and not dataset.rejected
    assert all(o.path.startswith(f"{o.label}/") for o in dataset.originals)
    assert {o.format for o in dataset.originals} == {"JPEG"}


def _labels_dir(tmp_path: Path) -> Path:
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    for i, src in enumerate(sorted(DIGITS.rglob("*.png"))[:12]):
        (images / f"{i:02d}.png").write_bytes(src.read_bytes())
    return tmp_path / "data"


def test_labels_csv(tmp_path: Path) -> None:
    root = _labels_dir(tmp_path)
    rows = ["path,label,group"] + [
        f"images/{i:02d}.png,{'odd' if i % 2 else 'even'},g{i // 4}" for i in range(12)
    ]
    rows += ["images/missing.png,odd,", "../outside.png,odd,", "images/00.png,even,"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    dataset = ingest(root / "labels.csv")
    assert dataset.kind == "labels" and len(dataset.originals) == 12
    assert {o.group for o in dataset.originals} == {"g0", "g1", "g2"}
    reasons = {r.path: r.reason for r in dataset.rejected}
    assert "file not found" in reasons["images/missing.png"]
    assert "escapes" in reasons["../outside.png"]
    assert "duplicate row" in reasons["images/00.png"]


def test_labels_jsonl(tmp_path: Path) -> None:
    root = _labels_dir(tmp_path)
    lines = [json.dumps({"path": f"images/{i:02d}.png", "label": str(i % 3)}) for i in range(12)]
    (root / "labels.jsonl").write_text("\n".join(lines))
    dataset = ingest(root / "labels.jsonl")
    assert dataset.classes == ["0", "1", "2"]


def test_labels_csv_without_header_is_a_clear_error(tmp_path: Path) -> None:
    root = _labels_dir(tmp_path)
    (root / "labels.csv").write_text("images/00.png,a\n")
    with pytest.raises(DatasetError, match="needs a header with a path column"):
        ingest(root / "labels.csv")


def test_stray_files_are_reported_not_fatal(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    (src / "cat" / "a.png").write_bytes((DIGITS / "3" / "digit3_01.png").read_bytes())
    (src / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (src / "cat" / "notes.txt").write_text("hello")
    (src / "README.png").write_bytes((DIGITS / "3" / "digit3_01.png").read_bytes())
    dataset = ingest(src)
    assert [o.path for o in dataset.originals] == ["cat/a.png"]
    reasons = {r.path: r.reason for r in dataset.rejected}
    assert set(reasons) == {"cat/notes.txt", "README.png"}  # hidden files are skipped quietly


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        ingest(tmp_path / "nope")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no usable images"):
        ingest(tmp_path / "empty")
