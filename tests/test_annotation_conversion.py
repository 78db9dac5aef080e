"""`augment expand --annotations yolo|coco|voc|masks`: an annotated set written in another
format, through the real command with worker processes, read back by the consumers of that
format (pycocotools, the XML parser, the mask PNGs; supervision in its own environment), and
the conversions that would invent or lose objects refused."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import (
    OBJECT_COLOURS,
    augment_command,
    every_file,
    manifest_by_path,
    scenes,
    write_coco,
    write_masks,
    write_yolo,
)


def _expand(src: Path, out: Path, recipe: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["expand", str(src), str(out), "--recipe", str(recipe), "--times", "3"]
    return subprocess.run(
        augment_command(*args, "--format", "png", "--workers", "2", "--val", "0.2", *extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _mixed_coco(root: Path) -> Path:
    """A COCO set whose every second object has a box only (no segmentation)."""
    src = write_coco(root, scenes(12))
    path = src / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    for ann in doc["annotations"][::2]:
        del ann["segmentation"]
    path.write_text(json.dumps(doc))
    return src


@pytest.fixture(scope="module")
def coco_to_yolo(tmp_path_factory: pytest.TempPathFactory, geometric: Path) -> Path:
    root = tmp_path_factory.mktemp("coco_to_yolo")
    result = _expand(_mixed_coco(root / "src"), root / "out", geometric, "--annotations", "yolo")
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.mark.slow
def test_coco_converted_to_yolo_has_label_files_ultralytics_reads_alike(
    coco_to_yolo: Path,
) -> None:
    """Every label file holds the record's objects; a file with any outline writes every
    object as a polygon (Ultralytics takes all lines of such a file as polygons)."""
    data = yaml.safe_load((coco_to_yolo / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(OBJECT_COLOURS))
    assert data["train"] == "images/train" and data["val"] == "images/val"
    header = json.loads((coco_to_yolo / "augment.json").read_text())
    assert header["annotations"]["format"] == "yolo"
    assert header["annotations"]["converted_from"] == "coco"
    polygon_files = 0
    for path, record in manifest_by_path(coco_to_yolo).items():
        annotation = record["annotation"]
        label = coco_to_yolo / annotation["file"]
        assert label == coco_to_yolo / Path(path.replace("images/", "labels/", 1)).with_suffix(
            ".txt"
        )
        lines = [line.split() for line in label.read_text().splitlines()]
        assert len(lines) == len(annotation["objects"])
        widths = {len(line) for line in lines}
        assert widths <= {5} or 5 not in widths, (path, widths)
        polygon_files += any(len(line) > 5 for line in lines)
        width, height = annotation["size"]
        for line, obj in zip(lines, annotation["objects"], strict=True):
            assert list(OBJECT_COLOURS)[int(line[0])] == obj["label"]
            values = np.array([float(v) for v in line[1:]])
            if len(values) == 4:
                cx, cy, w, h = values * [width, height, width, height]
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            else:
                xs, ys = values[0::2] * width, values[1::2] * height
                box = [xs.min(), ys.min(), xs.max(), ys.max()]
            # A polygon's extent is inside its box (a rotated box is the box of its corners).
            assert box[0] >= obj["box"][0] - 0.01 and box[2] <= obj["box"][2] + 0.01
            assert box[1] >= obj["box"][1] - 0.01 and box[3] <= obj["box"][3] + 0.01
    assert polygon_files > 5


def test_the_converted_yolo_output_loads_in_supervision(coco_to_yolo: Path) -> None:
    """supervision reads the converted output as it reads a YOLO set (its own environment:
    it pulls a second OpenCV; elsewhere this skips)."""
    sv = pytest.importorskip(
        "supervision", reason="supervision needs its own environment (a second OpenCV)"
    )
    records = manifest_by_path(coco_to_yolo)
    for folder in ("train", "val"):
        dataset = sv.DetectionDataset.from_yolo(
            images_directory_path=str(coco_to_yolo / "images" / folder),
            annotations_directory_path=str(coco_to_yolo / "labels" / folder),
            data_yaml_path=str(coco_to_yolo / "data.yaml"),
        )
        assert len(dataset) == sum(1 for p in records if p.startswith(f"images/{folder}/"))
        for path, _image, detections in dataset:
            objects = records[Path(path).relative_to(coco_to_yolo).as_posix()]["annotation"]
            assert len(detections) == len(objects["objects"])


@pytest.mark.slow
def test_yolo_converted_to_coco_loads_in_pycocotools(tmp_path: Path, geometric: Path) -> None:
    from pycocotools.coco import COCO

    src = write_yolo(tmp_path / "src", scenes(12))
    result = _expand(src, tmp_path / "out", geometric, "--annotations", "coco")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert not (out / "labels").exists() and not (out / "data.yaml").exists()
    records = manifest_by_path(out)
    for split, folder in (("train", "train"), ("validation", "val")):
        coco = COCO(str(out / "annotations" / f"instances_{folder}.json"))
        ours = {Path(p).name: r for p, r in records.items() if r["split"] == split}
        assert {i["file_name"] for i in coco.loadImgs(coco.getImgIds())} == set(ours)
        for image in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            objects = ours[image["file_name"]]["annotation"]["objects"]
            theirs = sorted((coco.loadCats(a["category_id"])[0]["name"], *a["bbox"]) for a in anns)
            mine = sorted((o["label"], o["box"][0], o["box"][1], o["box"][2] - o["box"][0],
                           o["box"][3] - o["box"][1]) for o in objects)  # fmt: skip
            assert [t[0] for t in theirs] == [m[0] for m in mine]
            assert np.allclose([t[1:] for t in theirs], [m[1:] for m in mine], atol=0.01)


@pytest.mark.slow
def test_coco_converted_to_voc_keeps_the_boxes(tmp_path: Path, geometric: Path) -> None:
    src = write_coco(tmp_path / "src", scenes(10))
    result = _expand(src, tmp_path / "out", geometric, "--annotations", "voc")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for path, record in manifest_by_path(out).items():
        doc = ET.parse(out / record["annotation"]["file"]).getroot()
        assert f"images/{doc.findtext('folder')}/{doc.findtext('filename')}" == path
        boxes = sorted(
            (o.findtext("name"), *(float(o.findtext(f"bndbox/{k}") or "nan")
                                   for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in doc.iter("object")
        )  # fmt: skip
        mine = sorted((o["label"], o["box"][0] + 1, o["box"][1] + 1, o["box"][2], o["box"][3])
                      for o in record["annotation"]["objects"])  # fmt: skip
        assert [b[0] for b in boxes] == [m[0] for m in mine]
        assert np.allclose([b[1:] for b in boxes], [m[1:] for m in mine], atol=1e-6)


@pytest.mark.slow
def test_coco_outlines_converted_to_masks_cover_the_objects(
    tmp_path: Path, geometric: Path
) -> None:
    """Each object's outline is drawn as its class id: the class's pixels in the image and
    on the mask agree (the outline is moved as vertices, the pixels as pixels: they differ
    only along the edges)."""
    src = write_coco(tmp_path / "src", scenes(10))
    result = _expand(src, tmp_path / "out", geometric, "--annotations", "masks")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    names = ["background", *OBJECT_COLOURS]
    assert (out / "classes.txt").read_text().split() == names
    checked = 0
    for path, record in manifest_by_path(out).items():
        ids = np.asarray(Image.open(out / record["annotation"]["file"]))
        pixels = np.asarray(Image.open(out / path).convert("RGB"))
        assert ids.shape == pixels.shape[:2]
        for class_id, name in enumerate(names[1:], start=1):
            drawn = np.all(np.abs(pixels.astype(int) - OBJECT_COLOURS[name]) <= 8, axis=2)
            labelled = ids == class_id
            if drawn.sum() < 20:
                continue
            iou = (drawn & labelled).sum() / (drawn | labelled).sum()
            assert iou > 0.75, (path, name, iou)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("make", "target", "says"),
    [
        (write_yolo, "masks", "only a box"),
        (write_masks, "yolo", "one region per class"),
        (write_masks, "coco", "one region per class"),
    ],
)
@pytest.mark.slow
def test_a_conversion_that_would_invent_objects_is_refused(
    tmp_path: Path, geometric: Path, make, target: str, says: str
) -> None:
    src = make(tmp_path / "src", scenes(6))
    result = _expand(src, tmp_path / "out", geometric, "--annotations", target)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_annotations_on_a_classification_set_is_refused(tmp_path: Path, geometric: Path) -> None:
    from tests.helpers import DIGITS

    result = _expand(DIGITS, tmp_path / "out", geometric, "--annotations", "coco")
    assert result.returncode == 2
    assert "classification set" in result.stderr and "Traceback" not in result.stderr


def test_changing_the_format_renames_the_outputs_and_keeps_their_pixels(
    tmp_path: Path, geometric: Path
) -> None:
    """The format is part of every name (an output is its image and its annotation file): a
    run with another --annotations replaces every output and the old format's files; the
    same command again writes nothing; each output's pixels are what they were."""
    src = write_coco(tmp_path / "src", scenes(8))
    out = tmp_path / "out"
    expand(src, out, ExpandOptions(times=2, recipe=str(geometric), workers=2))
    before = _pixels_by_variant(out)
    converted = ExpandOptions(times=2, recipe=str(geometric), workers=2, annotations="yolo")
    summary = expand(src, out, converted)
    assert summary.written == summary.removed == len(before) and summary.reused == 0
    assert not (out / "annotations").exists() and (out / "data.yaml").is_file()
    after = _pixels_by_variant(out)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    files = every_file(out)
    assert expand(src, out, converted).written == 0
    assert every_file(out) == files


def _pixels_by_variant(out: Path) -> dict[tuple[str, int], np.ndarray]:
    return {
        (r["sources"][0]["path"], r["variant"]): np.asarray(Image.open(out / p))
        for p, r in manifest_by_path(out).items()
    }
