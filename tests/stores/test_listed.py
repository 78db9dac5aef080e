"""Ingest from a store's listing (augment/stores/listed.py) against the local walk of the
same files: the same originals, rejections (in the same order), splits and pHashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from augment.errors import DatasetError
from augment.stages.duplicates import hash_originals
from augment.stages.ingest import ingest, listed_source
from augment.stores.listed import ListedIngest, reads_from_listing
from augment.stores.sources import open_source
from tests.helpers import DETECTION, TEXTURES


def _awkward(root: Path) -> Path:
    """Class folders with what the walk rejects or skips: a hidden file and folder, a file
    outside any class folder, a text file, a broken image, a class of only hidden files."""
    shutil.copytree(TEXTURES, root)
    (root / "grass" / ".DS_Store").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref")
    (root / "brick" / "notes.txt").write_text("not an image")
    (root / "brick" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "brick" / "deeper").mkdir()
    shutil.copy(TEXTURES / "gravel" / "gravel_01.jpg", root / "brick" / "deeper" / "g.jpg")
    (root / "aaa_hidden_only").mkdir()
    (root / "aaa_hidden_only" / ".keep").write_bytes(b"")
    return root


def _listed(root: Path, known: dict[str, str] | None = None) -> tuple[ListedIngest, object]:
    source = open_source(root.as_uri())
    listed = ListedIngest(source, known or {}, near_duplicates=True)
    token = listed_source.set(listed)
    try:
        dataset = ingest(Path("/nonexistent-working-copy"))
    finally:
        listed_source.reset(token)
    return listed, dataset


def test_the_listing_gives_the_local_walk_s_dataset(tmp_path: Path) -> None:
    root = _awkward(tmp_path / "src")
    local = ingest(root)
    listed, dataset = _listed(root)
    assert dataset.originals == local.originals  # type: ignore[attr-defined]
    assert dataset.rejected == local.rejected  # type: ignore[attr-defined]
    assert [r.path for r in local.rejected] == [
        "aaa_hidden_only/",
        "brick/broken.jpg",
        "brick/notes.txt",
    ]
    assert dataset.given_splits == local.given_splits == {}  # type: ignore[attr-defined]
    # The pHashes taken from the same read are the local hashing's.
    hashes, _ = hash_originals(root, local.originals, {})
    assert {o.path: listed.hashes[o.sha256] for o in local.originals} == hashes
    assert len(listed.read) == len(local.originals) + 1  # the broken image was read too


def test_split_folders_and_a_file_outside_a_class_folder(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for split in ("train", "val"):
        shutil.copytree(TEXTURES / "brick", root / split / "brick")
    shutil.copy(TEXTURES / "grass" / "grass_01.jpg", root / "train" / "loose.jpg")
    local = ingest(root)
    _, dataset = _listed(root)
    assert dataset.given_splits == local.given_splits  # type: ignore[attr-defined]
    assert set(local.given_splits.values()) == {"train", "validation"}
    assert dataset.rejected == local.rejected  # type: ignore[attr-defined]
    assert dataset.originals == local.originals  # type: ignore[attr-defined]


def test_a_source_whose_bytes_are_not_its_listed_version_stops_the_run(tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(TEXTURES / "brick", root / "brick")
    etag = open_source(root.as_uri()).entries[0].etag
    with pytest.raises(DatasetError, match="changed while it was read"):
        _listed(root, known={etag: "0" * 64})


def test_annotated_layouts_and_labels_files_are_staged(tmp_path: Path) -> None:
    assert reads_from_listing(open_source(TEXTURES.as_uri()))
    assert not reads_from_listing(open_source(DETECTION.as_uri()))  # YOLO: data.yaml
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    shutil.copytree(TEXTURES / "brick", tmp_path / "brick")
    assert not reads_from_listing(open_source(labels.as_uri()))


def test_a_rerun_reads_only_the_versions_it_has_not_ingested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "src"
    shutil.copytree(TEXTURES, root)
    first, _ = _listed(root)
    changed = root / "grass" / "grass_01.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")  # new bytes, the same picture
    source = open_source(root.as_uri())
    reads: list[str] = []
    read = source.store.read
    monkeypatch.setattr(source.store, "read", lambda path: reads.append(path) or read(path))
    again = ListedIngest(source, first.read, True, first.ingested)
    token = listed_source.set(again)
    try:
        dataset = ingest(root)
    finally:
        listed_source.reset(token)
    assert reads == ["grass/grass_01.jpg"]
    local = ingest(root)
    assert dataset.originals == local.originals and dataset.rejected == local.rejected
    hashes, _ = hash_originals(root, local.originals, {})
    assert {o.path: again.hashes[o.sha256] for o in local.originals} == hashes
