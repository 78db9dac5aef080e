"""Mixes of a COCO set whose objects are RLE masks and two-part outlines, through the real
command: Mosaic, CutMix and CopyPaste outputs' masks, as pycocotools decodes them from the output's
COCO files, are the pixels of their objects' colours; 1 and 2 workers make the same bytes,
a rerun writes nothing, the audit finds nothing (the functions alone:
tests/recipe/test_mosaic.py, tests/recipe/test_copy_paste.py, tests/annotations/test_shapes.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from augment.commands.audit import audit_output
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    augment_command,
    every_file,
    file_tree,
    manifest_by_path,
    scenes,
    shaped_coco,
)

# Unrotated and nearest-neighbour: an object keeps its exact colour (Mosaic's half-size
# tiles are area-interpolated, so their objects' edges blend over a pixel).
UNROTATED = GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0")
RECIPES = {
    "Mosaic": UNROTATED + "mix:\n  - Mosaic: {p: 1.0}\n",
    "CutMix": UNROTATED + "mix:\n  - CutMix: {p: 1.0, alpha: 1.0}\n",
    "CopyPaste": UNROTATED
    + "mix:\n  - CopyPaste: {p: 1.0, max_per_output: 2, scale: [0.6, 1.6]}\n",
}


def _recipe(root: Path, kind: str) -> Path:
    path = root / f"{kind}.yaml"
    path.write_text(RECIPES[kind])
    return path


@pytest.fixture(scope="module", params=list(RECIPES))
def mixed_out(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """12 scenes whose every third object is an RLE mask (not a crowd: pasteable) and every
    third, offset by one, a two-part outline; every variant mixed, 2 worker processes."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    src = shaped_coco(root / "src", scenes(12), crowd=False)
    args = ["expand", str(src), str(root / "out"), "--recipe", str(_recipe(root, kind))]
    args += ["--times", "3", "--format", "png", "--workers", "2"]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return kind, root / "out"


def _colour(pixels: np.ndarray, label: str) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - OBJECT_COLOURS[label]) <= 8, axis=2)


def _grown(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


@pytest.mark.slow
def test_mixed_masks_are_their_objects_pixels_in_pycocotools(mixed_out: tuple[str, Path]) -> None:
    """Every object of a mixed output has a segmentation; per class, the union of the masks
    pycocotools decodes is the pixels of that colour, to within a pixel at the edges (outlines
    are moved as vertices, Mosaic's tiles area-interpolated). A pasted or cut RLE mask is
    exactly pixels of its colour (nearest-neighbour throughout), in CutMix and CopyPaste."""
    kind, out = mixed_out
    records = manifest_by_path(out)
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    rle_objects = parts = mixed = 0
    for image in coco.loadImgs(coco.getImgIds()):
        record = records[f"images/train/{image['file_name']}"]
        if not any(p["transform"] == kind for p in record["params"]):
            continue
        mixed += 1
        pixels = np.asarray(
            Image.open(out / "images" / "train" / image["file_name"]).convert("RGB")
        )
        union = {label: np.zeros(pixels.shape[:2], bool) for label in OBJECT_COLOURS}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            assert ann["segmentation"], (image["file_name"], ann)
            label = coco.loadCats(ann["category_id"])[0]["name"]
            mask = coco.annToMask(ann).astype(bool)
            assert mask.any() and ann["area"] == mask.sum()
            union[label] |= mask
            if isinstance(ann["segmentation"], dict):
                rle_objects += 1
                if kind != "Mosaic":  # nearest-neighbour throughout: exact
                    assert _colour(pixels, label)[mask].all(), (image["file_name"], ann["id"])
            else:
                parts += len(ann["segmentation"]) > 1
        for label, mask in union.items():
            drawn = _colour(pixels, label)
            assert not (mask & ~_grown(drawn)).any(), (image["file_name"], label)
            if label not in record["annotation"]["dropped"]:
                assert not (drawn & ~_grown(mask)).any(), (image["file_name"], label)
    assert mixed >= 12 and rle_objects >= 10 and parts >= 10, (mixed, rle_objects, parts)


@pytest.mark.slow
@pytest.mark.parametrize("mixed_out", ["CopyPaste"], indirect=True)
def test_pasted_instances_include_rle_and_two_part_ones(mixed_out: tuple[str, Path]) -> None:
    _, out = mixed_out
    shapes = set()
    for record in manifest_by_path(out).values():
        entry = next((p for p in record["params"] if p["transform"] == "CopyPaste"), None)
        if entry is None:
            continue
        pasted = record["annotation"]["objects"][-len(entry["instances"]) :]
        shapes |= {
            "rle" if "rle" in o else "parts" for o in pasted if "rle" in o or "more_polygons" in o
        }
    assert shapes == {"rle", "parts"}


@pytest.mark.slow
def test_mixed_outputs_pass_the_audit(mixed_out: tuple[str, Path]) -> None:
    _, out = mixed_out
    assert not audit_output(out).findings


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(RECIPES))
def test_workers_1_and_2_make_the_same_bytes_and_a_rerun_writes_nothing(
    tmp_path: Path, kind: str
) -> None:
    """COCO and a masks output (the objects' shapes drawn as class ids) alike."""
    src = shaped_coco(tmp_path / "src", scenes(24), crowd=False)  # two shards and more
    for path in src.rglob("*"):  # old enough for their stamps to be trusted on the rerun
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    recipe = str(_recipe(tmp_path, kind))
    for kind_out in (None, "masks"):
        for workers in (1, 2):
            options = ExpandOptions(times=3, recipe=recipe, workers=workers, annotations=kind_out)
            expand(src, tmp_path / f"out{workers}{kind_out}", options)
        assert file_tree(tmp_path / f"out1{kind_out}") == file_tree(tmp_path / f"out2{kind_out}")
    before = every_file(tmp_path / "out2None")
    options = ExpandOptions(times=3, recipe=recipe, workers=2)
    assert expand(src, tmp_path / "out2None", options).written == 0
    assert every_file(tmp_path / "out2None") == before
