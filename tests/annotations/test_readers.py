"""Reading YOLO and COCO sources: what ingest makes of them, each bad annotation rejected
with its reason, and half-recognised layouts refused (real files throughout)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from augment.errors import DatasetError
from augment.stages.ingest import ingest
from tests.helpers import augment_command, scenes, write_coco, write_voc, write_yolo


def test_a_yolo_set_is_read_with_boxes_in_pixels(tmp_path: Path) -> None:
    made = scenes(4)
    dataset = ingest(write_yolo(tmp_path, made))
    assert (dataset.kind, dataset.task, dataset.names) == (
        "yolo",
        "detection",
        ["magenta", "green", "blue"],
    )
    by_path = {o.path: o for o in dataset.originals}
    for stem, _, _, objects in made:
        original = by_path[f"images/{stem}.png"]
        assert original.annotation is not None
        assert original.annotation.file == f"labels/{stem}.txt"
        got = [(o.label, tuple(round(v) for v in o.box)) for o in original.annotation.objects]
        assert got == [(label, box) for label, box in objects]
    assert by_path["images/scene_03.png"].annotation.objects == ()  # a negative is kept


def test_a_coco_set_is_read_with_outlines(tmp_path: Path) -> None:
    made = scenes(4)
    dataset = ingest(write_coco(tmp_path, made))
    assert dataset.kind == "coco" and dataset.names == ["magenta", "green", "blue"]
    first = next(o for o in dataset.originals if o.path == "images/scene_00.png")
    assert first.annotation is not None
    (obj,) = first.annotation.objects
    x0, y0, x1, y1 = obj.box
    assert obj.polygon == (x0, y0, x1, y0, x1, y1, x0, y1)


def test_coco_rle_and_every_polygon_part_are_read(tmp_path: Path) -> None:
    write_coco(tmp_path, scenes(3))
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    width, height = doc["images"][0]["width"], doc["images"][0]["height"]
    mask = np.zeros((height, width), np.uint8)
    counts = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
    doc["annotations"][0]["segmentation"] = {"size": [height, width], "counts": counts}
    doc["annotations"][0]["iscrowd"] = 1
    parts = [[1, 1, 5, 1, 5, 5], [6, 6, 9, 6, 9, 9, 6, 9]]
    doc["annotations"][1]["segmentation"] = parts
    path.write_text(json.dumps(doc))
    objects = {o.path: o.annotation.objects for o in ingest(tmp_path).originals}
    crowd = objects["images/scene_00.png"][0]
    assert (crowd.rle, crowd.crowd, crowd.polygon) == (counts, True, ())
    outlined = objects["images/scene_01.png"][0]
    assert outlined.polygons == tuple(tuple(float(v) for v in p) for p in parts)


@pytest.mark.parametrize(
    ("segmentation", "reason"),
    [
        ({"size": [5, 5], "counts": "abc"}, "the RLE mask is 5x5 pixels, the image 96x80"),
        ({"size": [80, 96], "counts": [1, 2, 3]}, "do not add up to 96x80 pixels"),
        ({"size": [80, 96], "counts": {"a": 1}}, "RLE counts must be a string"),
        ({"size": [80, 96], "counts": "abc"}, "not COCO's compressed RLE"),
        ({"size": [80, 96], "counts": "4"}, "do not add up to 96x80 pixels"),
        ({"counts": "abc"}, "needs size [height, width]"),
    ],
)
def test_a_bad_coco_rle_rejects_its_image(tmp_path: Path, segmentation: dict, reason: str) -> None:
    write_coco(tmp_path, scenes(3))
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["segmentation"] = segmentation
    path.write_text(json.dumps(doc))
    (rejected,) = ingest(tmp_path).rejected
    assert rejected.path == "images/scene_00.png" and reason in rejected.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 1.2 0.5 0.4 0.4", "lies outside the"),
        ("0 0.5 0.5 0 0.3", "zero-area box"),
        ("7 0.5 0.5 0.2 0.2", "class id 7 is not in data.yaml's names (0..2)"),
        ("0 0.5 zero 0.2 0.2", "expected 'class cx cy w h' numbers"),
        ("0 0.5 0.5", "expected 5 numbers"),
    ],
)
def test_a_bad_yolo_line_rejects_its_image_with_the_reason(
    tmp_path: Path, line: str, reason: str
) -> None:
    write_yolo(tmp_path, scenes(3))
    (tmp_path / "labels" / "scene_00.txt").write_text(line + "\n")
    dataset = ingest(tmp_path)
    (rejected,) = dataset.rejected
    assert rejected.path == "images/scene_00.png"
    assert rejected.reason.startswith("labels/scene_00.txt line 1: ")
    assert reason in rejected.reason
    assert len(dataset.originals) == 2


def test_a_bad_coco_annotation_rejects_its_image(tmp_path: Path) -> None:
    write_coco(tmp_path, scenes(3))
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["category_id"] = 99
    doc["images"][1]["width"] += 5
    path.write_text(json.dumps(doc))
    reasons = {r.path: r.reason for r in ingest(tmp_path).rejected}
    assert "category_id 99 is not in the categories" in reasons["images/scene_00.png"]
    assert (
        "the annotation says 109x86 pixels, the image is 104x86" in reasons["images/scene_01.png"]
    )


def test_a_label_file_without_an_image_is_rejected(tmp_path: Path) -> None:
    write_yolo(tmp_path, scenes(4))
    (tmp_path / "labels" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert [(r.path, r.reason) for r in ingest(tmp_path).rejected] == [
        ("labels/stray.txt", "label file without an image")
    ]


def test_labels_whose_images_are_missing_are_an_error(tmp_path: Path) -> None:
    write_yolo(tmp_path, scenes(6))
    for image in sorted((tmp_path / "images").iterdir())[1:]:
        image.unlink()
    with pytest.raises(DatasetError, match="label files have no image under images/"):
        ingest(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-data-yaml", "has images/ and labels/ but no data.yaml"),
        ("no-images", "has data.yaml but no images/ folder"),
        ("no-names", "data.yaml needs a non-empty 'names' list"),
    ],
)
@pytest.mark.slow
def test_a_half_recognised_yolo_layout_is_a_clear_error(
    tmp_path: Path, damage: str, message: str
) -> None:
    src = write_yolo(tmp_path / "src", scenes(3))
    if damage == "no-data-yaml":
        (src / "data.yaml").unlink()
    elif damage == "no-images":
        for image in (src / "images").iterdir():
            image.unlink()
        (src / "images").rmdir()
    else:
        (src / "data.yaml").write_text("nc: 3\n")
    result = subprocess.run(
        augment_command("expand", str(src), str(tmp_path / "out")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_coco_file_without_categories_is_a_clear_error(tmp_path: Path) -> None:
    write_coco(tmp_path, scenes(3))
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    del doc["categories"]
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="has no 'categories': the class names are missing"):
        ingest(tmp_path)


def test_a_class_folder_named_images_is_still_a_class(tmp_path: Path) -> None:
    """Only images/ with labels/*.txt (or a data.yaml) is YOLO: a class called `images`
    stays a classification set."""
    write_yolo(tmp_path / "y", scenes(2))
    for cls in ("images", "cats"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for png in (tmp_path / "y" / "images").iterdir():
            (tmp_path / "src" / cls / png.name).write_bytes(png.read_bytes())
    dataset = ingest(tmp_path / "src")
    assert dataset.kind == "folders" and dataset.classes == ["cats", "images"]


def test_a_voc_set_is_read_with_boxes_from_1_based_indices(tmp_path: Path) -> None:
    made = scenes(4)
    dataset = ingest(write_voc(tmp_path, made))
    assert dataset.kind == "voc" and dataset.names == sorted({"magenta", "green", "blue"})
    by_path = {o.path: o for o in dataset.originals}
    for stem, _, _, objects in made:
        annotation = by_path[f"JPEGImages/{stem}.png"].annotation
        assert annotation is not None
        assert [(o.label, o.box) for o in annotation.objects] == [
            (label, tuple(map(float, box))) for label, box in objects
        ]


def test_a_broken_voc_xml_rejects_its_image(tmp_path: Path) -> None:
    write_voc(tmp_path, scenes(3))
    (tmp_path / "Annotations" / "scene_00.xml").write_text("<annotation><object>")
    (tmp_path / "Annotations" / "scene_01.xml").write_text(
        "<annotation><object><name>blue</name></object></annotation>"
    )
    reasons = {r.path: r.reason for r in ingest(tmp_path).rejected}
    assert reasons["JPEGImages/scene_00.png"].startswith("Annotations/scene_00.xml is not valid")
    assert "needs a <name> and a <bndbox>" in reasons["JPEGImages/scene_01.png"]


def test_voc_annotations_without_images_are_a_clear_error(tmp_path: Path) -> None:
    write_voc(tmp_path, scenes(3))
    for image in (tmp_path / "JPEGImages").iterdir():
        image.unlink()
    (tmp_path / "JPEGImages").rmdir()
    with pytest.raises(DatasetError, match="looks like Pascal VOC but has no JPEGImages/"):
        ingest(tmp_path)


def test_a_mask_set_is_read_with_each_class_extent(tmp_path: Path) -> None:
    from tests.helpers import write_masks

    made = scenes(4)
    dataset = ingest(write_masks(tmp_path, made))
    assert (dataset.kind, dataset.task) == ("masks", "segmentation")
    first = next(o for o in dataset.originals if o.path == "images/scene_00.png")
    assert first.annotation is not None and first.annotation.mask == "masks/scene_00.png"
    ((label, box),) = made[0][3]
    assert [(o.label, o.box) for o in first.annotation.objects] == [(label, tuple(map(float, box)))]


def test_a_bad_mask_rejects_its_image(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from tests.helpers import write_masks

    write_masks(tmp_path, scenes(4))
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(tmp_path / "masks" / "scene_00.png")
    Image.fromarray(np.zeros((80, 96, 3), np.uint8)).save(tmp_path / "masks" / "scene_01.png")
    Image.fromarray(np.full((86, 104), 9, np.uint8), "L").save(tmp_path / "masks" / "scene_02.png")
    reasons = {r.path: r.reason for r in ingest(tmp_path).rejected}
    assert reasons["images/scene_00.png"] == (
        "masks/scene_00.png: the annotation says 10x10 pixels, the image is 96x80"
    )
    assert (
        "a mask must be a single-channel PNG of class ids, not RGB"
        in reasons["images/scene_01.png"]
    )
    assert reasons["images/scene_02.png"] == "masks/scene_02.png: class id 9 is not in classes.txt"


def test_a_clean_mask_output_passes_the_audit(tmp_path: Path) -> None:
    from augment.commands.audit import audit_output
    from augment.model import ExpandOptions
    from augment.run import expand
    from tests.helpers import GEOMETRIC_RECIPE, write_masks

    recipe = tmp_path / "g.yaml"
    recipe.write_text(GEOMETRIC_RECIPE)
    src = write_masks(tmp_path / "src", scenes(8))
    options = ExpandOptions(times=2, recipe=str(recipe), workers=1, val=0.25, test=0.25)
    expand(src, tmp_path / "out", options)
    found = [f for f in audit_output(tmp_path / "out").findings if f.check != "balance"]
    assert found == []
    (tmp_path / "out" / "masks" / "train").rename(tmp_path / "out" / "masks" / "gone")
    kinds = {f.kind for f in audit_output(tmp_path / "out").findings}
    assert "missing-label-file" in kinds


def test_a_coco_rle_is_read_as_pycocotools_reads_it() -> None:
    """The compressed counts are checked when the source is read, without numpy: the runs
    read from each string are the runs of the mask pycocotools encoded."""
    from augment.annotations.coco import rle_counts
    from tests.helpers import uncompressed_counts

    rng = np.random.default_rng(0)
    for n in range(200):
        height, width = (int(v) for v in rng.integers(1, 60, 2))
        mask = rng.random((height, width)) > rng.random()
        if n % 3 == 0:  # long runs: counts of several 5-bit groups
            mask = np.zeros((height, width), bool)
            mask[height // 3 :, width // 4 :] = True
        text = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert rle_counts(text) == uncompressed_counts(mask), (height, width)


def test_an_rle_of_another_size_than_an_image_without_width_is_rejected(tmp_path: Path) -> None:
    write_coco(tmp_path, scenes(3))
    path = tmp_path / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    del doc["images"][0]["width"], doc["images"][0]["height"]
    mask = np.zeros((10, 10), np.uint8)
    counts = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
    doc["annotations"][0]["segmentation"] = {"size": [10, 10], "counts": counts}
    path.write_text(json.dumps(doc))
    (rejected,) = ingest(tmp_path).rejected
    assert "the annotation says 10x10 pixels, the image is 96x80" in rejected.reason


def test_a_coordinate_that_is_not_a_number_rejects_its_image(tmp_path: Path) -> None:
    write_coco(tmp_path / "coco", scenes(3))
    path = tmp_path / "coco" / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["segmentation"] = [[1, 1, float("nan"), 1, 5, 5]]
    path.write_text(json.dumps(doc))  # NaN: Python's json writes and reads it
    (rejected,) = ingest(tmp_path / "coco").rejected
    assert "a coordinate is not a finite number" in rejected.reason
    write_yolo(tmp_path / "yolo", scenes(3))
    (tmp_path / "yolo" / "labels" / "scene_00.txt").write_text("0 0.1 0.1 inf 0.2 0.3 0.3\n")
    (rejected,) = ingest(tmp_path / "yolo").rejected
    assert "a coordinate is not a finite number" in rejected.reason
