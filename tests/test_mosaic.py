"""Mosaic end to end: four train originals per output through the real command, their objects
found again by colour in the pixels, lineage audited, reruns and worker counts compared."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment.commands.audit import audit_output
from augment.commands.preview import PreviewOptions, preview
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    TEXTURES,
    augment_command,
    boxes_hug_their_colours,
    every_file,
    file_tree,
    manifest_by_path,
    scenes,
    write_coco,
    write_masks,
    write_voc,
    write_yolo,
)

# The geometric recipe without rotation: a rotated rectangle's box is loose at its corners,
# and cut by a tile's edge it can be looser still; unrotated, every box is exact.
MOSAIC_RECIPE = (
    GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0") + "mix:\n  - Mosaic: {p: 1.0}\n"
)


def _is_mosaic(record: dict) -> bool:
    return any(p["transform"] == "Mosaic" for p in record["params"])


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "mosaic.yaml"
    path.write_text(MOSAIC_RECIPE)
    return path


@pytest.fixture(scope="module")
def mosaic_out(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> Path:
    """14 scenes, a fifth held out for validation and for test; every variant a mosaic."""
    root = tmp_path_factory.mktemp("mosaic")
    src = write_yolo(root / "src", scenes(14))
    args = ["expand", str(src), str(root / "out"), "--recipe", str(recipe), "--times", "3"]
    args += ["--val", "0.2", "--test", "0.2", "--format", "png", "--workers", "2"]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return root / "out"


def _colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - colour) <= 8, axis=2)


@pytest.mark.slow
def test_mosaic_boxes_are_the_tiles_objects(mosaic_out: Path) -> None:
    """Each box hugs the pixels of its class's colour inside it (within 2 pixels: the tiles
    are halved), and every pixel of that colour is inside one of its class's boxes unless
    the record says an object of that class was dropped."""
    mosaics = [r for r in manifest_by_path(mosaic_out).values() if _is_mosaic(r)]
    assert len(mosaics) == 2 * 8  # 8 train originals (14, less 3 + 3 held out), 2 variants each
    checked = 0
    for record in mosaics:
        pixels = Image.open(mosaic_out / record["path"]).convert("RGB")
        checked += boxes_hug_their_colours(pixels, record["annotation"], slack=2)
    assert checked > 60


@pytest.mark.slow
def test_every_mosaic_source_is_a_train_original_with_its_area(mosaic_out: Path) -> None:
    header = json.loads((mosaic_out / "augment.json").read_text())
    split_of = {h["path"]: h["split"] for h in header["holdout"]}
    assert {"validation", "test"} <= set(split_of.values())
    for record in manifest_by_path(mosaic_out).values():
        if not _is_mosaic(record):
            continue
        sources = record["sources"]
        assert len(sources) == 4 and len({s["path"] for s in sources}) == 4
        assert all(split_of[s["path"]] == "train" for s in sources), record["path"]
        # Each weight is the share of the 128 x 112 output its 64 x 56 tile covers, placed
        # with a corner on the centre: top left, top right, bottom left, bottom right.
        cx, cy = next(p["centre"] for p in record["params"] if p["transform"] == "Mosaic")
        assert 32 <= cx <= 96 and 28 <= cy <= 84
        widths = (min(cx, 64), min(128 - cx, 64))
        heights = (min(cy, 56), min(112 - cy, 56))
        areas = [w * h / (128 * 112) for h in heights for w in widths]
        assert [s["weight"] for s in sources] == pytest.approx(areas, abs=1e-4)


def test_the_audit_checks_every_mosaic_source(mosaic_out: Path, tmp_path: Path) -> None:
    assert not [f for f in audit_output(mosaic_out).findings if f.check == "lineage"]
    copy = tmp_path / "out"
    shutil.copytree(mosaic_out, copy)
    lines = (copy / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    held = next(r for r in records if r["split"] == "test")["sources"][0]
    mosaic = next(r for r in records if _is_mosaic(r))
    mosaic["sources"][3] = {**held, "weight": mosaic["sources"][3]["weight"]}  # the last tile
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    found = [(f.kind, f.paths) for f in audit_output(copy).findings if f.check == "lineage"]
    assert found == [("held-out-source", (mosaic["path"], held["path"]))]


@pytest.mark.slow
def test_mosaic_workers_1_and_2_make_the_same_bytes_and_a_rerun_writes_nothing(
    tmp_path: Path, recipe: Path
) -> None:
    src = write_yolo(tmp_path / "src", scenes(24))  # 48 mosaics: two shards and more
    for workers in (1, 2):
        options = ExpandOptions(times=3, recipe=str(recipe), workers=workers)
        expand(src, tmp_path / f"out{workers}", options)
    assert file_tree(tmp_path / "out1") == file_tree(tmp_path / "out2")
    before = every_file(tmp_path / "out2")
    options = ExpandOptions(times=3, recipe=str(recipe), workers=2)
    assert expand(src, tmp_path / "out2", options).written == 0
    assert every_file(tmp_path / "out2") == before


@pytest.mark.parametrize("which", ["coco", "voc", "masks"])
def test_mosaic_outputs_of_every_format_pass_the_audit(
    tmp_path: Path, recipe: Path, which: str
) -> None:
    """COCO outlines, VOC XML and masks (placed nearest-neighbour, objects recomputed) come
    through a mosaic: the audit's lineage, integrity and annotation checks find nothing."""
    writer = {"coco": write_coco, "voc": write_voc, "masks": write_masks}[which]
    src = writer(tmp_path / "src", scenes(10))
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1)
    expand(src, tmp_path / "out", options)
    records = manifest_by_path(tmp_path / "out").values()
    assert sum(_is_mosaic(r) for r in records) == 10
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(tmp_path / "out").findings if f.check in checks]
    if which == "masks":  # the placed mask lies under its colour's pixels (ids 1, 2, 3)
        for record in (r for r in records if _is_mosaic(r)):
            pixels = np.asarray(Image.open(tmp_path / "out" / record["path"]).convert("RGB"))
            mask = np.asarray(Image.open(tmp_path / "out" / record["annotation"]["file"]))
            for class_id, colour in enumerate(OBJECT_COLOURS.values(), start=1):
                found = _colour(pixels, colour)
                # Halved by area (the image) and nearest-neighbour (the mask): edges may differ.
                assert (mask[found] == class_id).mean() >= 0.9 if found.any() else True


def test_preview_shows_mosaics_with_their_boxes(tmp_path: Path, recipe: Path) -> None:
    src = write_yolo(tmp_path / "src", scenes(10))
    sheet = preview(src, PreviewOptions(recipe=str(recipe), rows=2, variants=2, cell=128))
    pixels = np.asarray(sheet.image.convert("RGB"))
    for row in sheet.rows:
        for cell in row[1:]:  # every variant is a mosaic: four tiles, so a box in most
            x0, y0, x1, y1 = cell.box
            assert pixels[y0:y1, x0:x1].std() > 0


@pytest.mark.slow
def test_mosaic_is_refused_for_a_classification_set(tmp_path: Path, recipe: Path) -> None:
    args = ["expand", str(TEXTURES), str(tmp_path / "out"), "--recipe", str(recipe)]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Mosaic is for annotated datasets" in result.stderr
    assert "Traceback" not in result.stderr
