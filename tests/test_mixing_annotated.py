"""MixUp and CutMix on annotated sets, end to end: MixUp keeps both images' boxes, CutMix the
image's own outside its box (re-boxed or dropped) and the partner's inside it; the boxes are
found again by colour in the pixels (the mixing rules: stages/mixed.py)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from augment.commands.audit import audit_output
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    augment_command,
    boxes_hug_their_colours,
    file_tree,
    manifest_by_path,
    scenes,
    write_coco,
    write_yolo,
)

UNROTATED = GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0")
NAMES = list(OBJECT_COLOURS)


def _mix(record: dict, name: str) -> dict | None:
    return next((p for p in record["params"] if p["transform"] == name), None)


def _source_counts(src: Path, path: str) -> Counter[str]:
    rows = (src / path.replace("images/", "labels/", 1)).with_suffix(".txt").read_text()
    return Counter(NAMES[int(row.split()[0])] for row in rows.splitlines() if row.strip())


@pytest.fixture(scope="module")
def cutmix_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cutmix")
    recipe = root / "cutmix.yaml"
    recipe.write_text(UNROTATED + "mix:\n  - CutMix: {p: 1.0, alpha: 1.0}\n")
    src = write_yolo(root / "src", scenes(12))
    args = ["expand", str(src), str(root / "out"), "--recipe", str(recipe), "--times", "3"]
    args += ["--val", "0.2", "--test", "0.2", "--format", "png", "--workers", "2"]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return src, root / "out"


@pytest.mark.slow
def test_cutmix_boxes_are_exactly_the_objects_left_and_pasted(
    cutmix_out: tuple[Path, Path],
) -> None:
    """Objects fill their boxes (rectangles, nearest-neighbour, unrotated): every box hugs
    its colour (within a pixel: the affine's scale leaves fractional boxes), and every pixel
    of a class's colour is in one of that class's boxes unless the record says one of that
    class was dropped."""
    _, out = cutmix_out
    mixed = [r for r in manifest_by_path(out).values() if _mix(r, "CutMix")]
    assert len(mixed) >= 12
    checked = 0
    for record in mixed:
        pixels = Image.open(out / record["path"]).convert("RGB")
        checked += boxes_hug_their_colours(pixels, record["annotation"], slack=1)
    assert checked > 20


@pytest.mark.slow
def test_cutmix_sources_are_train_originals_and_the_audit_passes(
    cutmix_out: tuple[Path, Path],
) -> None:
    _, out = cutmix_out
    header = json.loads((out / "augment.json").read_text())
    split_of = {h["path"]: h["split"] for h in header["holdout"]}
    for record in manifest_by_path(out).values():
        if _mix(record, "CutMix"):
            assert [split_of[s["path"]] for s in record["sources"]] == ["train", "train"]
            assert sum(s["weight"] for s in record["sources"]) == pytest.approx(1)
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(out).findings if f.check in checks]


def test_mixup_keeps_both_images_objects(tmp_path: Path) -> None:
    recipe = tmp_path / "mixup.yaml"
    recipe.write_text(UNROTATED + "mix:\n  - MixUp: {p: 1.0, alpha: 0.4}\n")
    src = write_yolo(tmp_path / "src", scenes(8))
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1)
    expand(src, tmp_path / "out", options)
    mixed = [r for r in manifest_by_path(tmp_path / "out").values() if _mix(r, "MixUp")]
    assert len(mixed) == 8
    for record in mixed:
        own, partner = record["sources"]
        expected = _source_counts(src, own["path"]) + _source_counts(src, partner["path"])
        annotation = record["annotation"]
        assert Counter(annotation["counts"]) + Counter(annotation["dropped"]) == expected
        assert own["weight"] >= 0.5 and own["weight"] + partner["weight"] == pytest.approx(1)
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(tmp_path / "out").findings if f.check in checks]


@pytest.mark.slow
def test_mixup_and_cutmix_workers_1_and_2_make_the_same_bytes(tmp_path: Path) -> None:
    recipe = tmp_path / "both.yaml"
    recipe.write_text(UNROTATED + "mix:\n  - MixUp: {p: 0.5}\n  - CutMix: {p: 0.5}\n")
    src = write_coco(tmp_path / "src", scenes(16))  # outlines: CutMix re-outlines them
    for workers in (1, 2):
        options = ExpandOptions(times=3, recipe=str(recipe), workers=workers)
        expand(src, tmp_path / f"out{workers}", options)
    assert file_tree(tmp_path / "out1") == file_tree(tmp_path / "out2")
    options = ExpandOptions(times=3, recipe=str(recipe), workers=2)
    assert expand(src, tmp_path / "out2", options).written == 0
