"""COCO shapes beyond one polygon, end to end through the real command: RLE masks (crowd
regions, compressed and uncompressed counts) and multi-part outlines are read, moved with
the pixels (masks nearest-neighbour, every polygon's vertices) and written back, as
pycocotools reads them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    augment_command,
    manifest_by_path,
    shaped_coco,
    uncompressed_counts,
)


@pytest.fixture(scope="module")
def shaped_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    (root / "geometric.yaml").write_text(GEOMETRIC_RECIPE)
    src = shaped_coco(root / "src")
    args = ["expand", str(src), str(root / "out"), "--recipe", str(root / "geometric.yaml")]
    result = subprocess.run(
        augment_command(*args, "--times", "3", "--format", "png", "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root / "out"


def _colour(pixels: np.ndarray, name: str) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - OBJECT_COLOURS[name]) <= 8, axis=2)


@pytest.mark.slow
def test_rle_masks_are_the_warped_objects_in_pycocotools(shaped_out: Path) -> None:
    """Every crowd region's mask, as pycocotools decodes the output's RLE, is exactly the
    pixels of its colour: the mask moved with the image, nearest-neighbour."""
    from pycocotools.coco import COCO

    checked = 0
    for folder in ("train", "val", "test"):
        coco = COCO(str(shaped_out / "annotations" / f"instances_{folder}.json"))
        for image in coco.loadImgs(coco.getImgIds()):
            pixels = np.asarray(Image.open(shaped_out / "images" / folder / image["file_name"]))
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=True)):
                assert isinstance(ann["segmentation"]["counts"], str)
                name = coco.loadCats(ann["category_id"])[0]["name"]
                mask = coco.annToMask(ann).astype(bool)
                assert mask.shape == pixels.shape[:2]
                assert (mask == _colour(pixels, name)).all(), (image["file_name"], name)
                checked += 1
    assert checked > 15


def test_every_part_of_an_outline_is_kept(shaped_out: Path) -> None:
    """A two-part outline comes out as two polygons (COCO) that together cover the object's
    pixels; the record lists the second part."""
    from pycocotools.coco import COCO

    records = manifest_by_path(shaped_out)
    parts = 0
    for folder in ("train", "val", "test"):
        coco = COCO(str(shaped_out / "annotations" / f"instances_{folder}.json"))
        for image in coco.loadImgs(coco.getImgIds()):
            pixels = np.asarray(Image.open(shaped_out / "images" / folder / image["file_name"]))
            record = records[f"images/{folder}/{image['file_name']}"]
            two = [o for o in record["annotation"]["objects"] if o.get("more_polygons")]
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], iscrowd=False)):
                if len(ann["segmentation"]) != 2:
                    continue
                name = coco.loadCats(ann["category_id"])[0]["name"]
                mask, drawn = coco.annToMask(ann).astype(bool), _colour(pixels, name)
                assert (mask & drawn).sum() / (mask | drawn).sum() > 0.7
                assert any(o["label"] == name for o in two)
                parts += 1
    assert parts > 15


def test_the_source_s_rle_decodes_as_pycocotools_does(tmp_path: Path) -> None:
    """Compressed and uncompressed counts of one mask decode alike, and as pycocotools
    decodes them; annotations/shapes.py renders outlines as pycocotools' annToMask."""
    from augment.annotations.shapes import decode_rle, encode_rle, object_mask
    from augment.model import LabeledObject

    rng = np.random.default_rng(3)
    mask = rng.random((23, 31)) > 0.6
    compressed = encode_rle(mask)
    assert (decode_rle(compressed, 31, 23) == mask).all()
    assert (decode_rle(uncompressed_counts(mask), 31, 23) == mask).all()
    polygons = ((2.0, 3.0, 20.5, 4.0, 12.0, 19.0), (22.0, 2.0, 29.0, 2.0, 29.0, 12.0))
    obj = LabeledObject("a", (2.0, 2.0, 29.0, 19.0), polygons[0], more_polygons=polygons[1:])
    theirs = coco_mask.decode(
        coco_mask.merge(coco_mask.frPyObjects([list(p) for p in polygons], 23, 31))
    )
    assert (object_mask(obj, 31, 23) == theirs.astype(bool)).all()


@pytest.mark.slow
def test_workers_1_and_2_make_the_same_bytes_with_masks_and_parts(tmp_path: Path) -> None:
    """RLE masks and multi-part outlines moved, and drawn as a masks output, give the same
    bytes whatever the worker count (62 outputs: two shards, so a second process takes part)."""
    from augment.model import ExpandOptions
    from augment.run import expand
    from tests.helpers import file_tree, scenes

    recipe = tmp_path / "geometric.yaml"
    recipe.write_text(GEOMETRIC_RECIPE)
    src = shaped_coco(tmp_path / "src", scenes(24))
    for workers in (1, 2):
        options = ExpandOptions(times=3, recipe=str(recipe), workers=workers, annotations="masks")
        expand(src, tmp_path / f"out{workers}", options)
    tree = file_tree(tmp_path / "out1")
    assert sum(1 for p in tree if p.startswith("masks/")) > 50  # held-out ones: 1 each
    assert tree == file_tree(tmp_path / "out2")
