"""The annotated outputs read by the trainers' own loaders: torchvision's `CocoDetection`
(boxes and masks, RLE and multi-part outlines included, through its transforms-v2 wrapper)
and Ultralytics' dataset check and YOLODataset label loading.

Both pull torch and opencv-python, which cannot share an environment with
opencv-python-headless: they run in the annotated consumers' environment (.ci/run), and
skip elsewhere, saying why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    DETECTION,
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    augment_command,
    manifest_by_path,
    scenes,
    shaped_coco,
    write_yolo,
)

_OWN_ENVIRONMENT = "needs its own environment (torch and a second OpenCV): .ci/run"


def _expand(src: Path, out: Path, recipe: Path, *extra: str) -> Path:
    args = ["expand", str(src), str(out), "--recipe", str(recipe), "--times", "3"]
    result = subprocess.run(
        augment_command(*args, "--format", "png", "--workers", "2", "--val", "0.25", *extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "geometric.yaml"
    path.write_text(GEOMETRIC_RECIPE)
    return path


@pytest.fixture(scope="module")
def shaped_out(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> Path:
    """A COCO output with crowd RLE masks, two-part outlines and plain polygons."""
    pytest.importorskip("torchvision", reason=f"torchvision {_OWN_ENVIRONMENT}")
    root = tmp_path_factory.mktemp("shaped")
    return _expand(shaped_coco(root / "src"), root / "out", recipe)


def test_torchvision_coco_detection_reads_boxes_and_masks(shaped_out: Path) -> None:
    """CocoDetection, wrapped for transforms v2, gives each image's boxes (XYXY) and masks
    as tensors: the boxes are the records', every mask covers its object's colour."""
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

    records = manifest_by_path(shaped_out)
    names = list(OBJECT_COLOURS)
    checked = 0
    for folder in ("train", "val"):
        dataset = CocoDetection(
            str(shaped_out / "images" / folder),
            str(shaped_out / "annotations" / f"instances_{folder}.json"),
        )
        wrapped = wrap_dataset_for_transforms_v2(dataset, target_keys=("boxes", "labels", "masks"))
        assert len(dataset) == sum(1 for p in records if p.startswith(f"images/{folder}/"))
        for index in range(len(dataset)):
            image, target = wrapped[index]
            info = dataset.coco.loadImgs(dataset.ids[index])[0]
            record = records[f"images/{folder}/{info['file_name']}"]
            objects = record["annotation"]["objects"]
            assert tuple(image.size) == tuple(record["annotation"]["size"])
            if not objects:
                continue
            ours = np.array([o["box"] for o in objects])
            assert np.allclose(target["boxes"].numpy(), ours, atol=0.01)
            pixels = np.asarray(image)
            for mask, label in zip(target["masks"].numpy(), target["labels"].tolist(), strict=True):
                drawn = np.all(
                    np.abs(pixels.astype(int) - OBJECT_COLOURS[names[label - 1]]) <= 8, axis=2
                )
                assert (mask.astype(bool) & drawn).sum() >= 0.7 * drawn.sum() > 0
                checked += 1
    assert checked > 30


@pytest.fixture(scope="module")
def yolo_outputs(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> dict[str, Path]:
    """A YOLO output of a YOLO source (boxes) and one converted from COCO (outlines and
    boxes in one file, RLE crowd regions left out, a two-part outline's largest part)."""
    pytest.importorskip("ultralytics", reason=f"ultralytics {_OWN_ENVIRONMENT}")
    root = tmp_path_factory.mktemp("yolo_outputs")
    boxes = _expand(write_yolo(root / "yolo", scenes(12)), root / "boxes", recipe)
    coco = shaped_coco(root / "coco")
    path = coco / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    for ann in doc["annotations"][2::6]:  # some objects with a box only, beside outlines
        del ann["segmentation"]
    path.write_text(json.dumps(doc))
    outlines = _expand(coco, root / "outlines", recipe, "--annotations", "yolo")
    return {"detect": boxes, "segment": outlines}


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_ultralytics_checks_the_dataset_and_loads_its_labels(
    yolo_outputs: dict[str, Path], tmp_path: Path, task: str
) -> None:
    """Ultralytics' own check of data.yaml, then its YOLODataset reading every label file
    (it writes a labels cache beside them, so a copy is read): the boxes it derives are the
    records' boxes, for every image of both splits."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "out"
    shutil.copytree(yolo_outputs[task], out)
    records = manifest_by_path(out)
    data = check_det_dataset(str(out / "data.yaml"))
    assert data["names"] == dict(enumerate(OBJECT_COLOURS)) and data["nc"] == 3
    for folder in ("train", "val"):
        dataset = YOLODataset(img_path=data[folder], data=data, task=task, augment=False)
        labels = dataset.get_labels()
        assert len(labels) == sum(1 for p in records if p.startswith(f"images/{folder}/"))
        for label in labels:
            record = records[Path(label["im_file"]).relative_to(out).as_posix()]
            width, height = record["annotation"]["size"]
            assert label["shape"] == (height, width)
            objects = [o for o in record["annotation"]["objects"] if not o.get("crowd")]
            names = [list(OBJECT_COLOURS)[int(c)] for c in label["cls"].reshape(-1)]
            assert names == [o["label"] for o in objects]
            if task == "segment":
                assert len(label["segments"]) == len(objects)
            cx, cy, w, h = (label["bboxes"].reshape(-1, 4) * [width, height, width, height]).T
            theirs = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            for box, obj in zip(theirs.tolist(), objects, strict=True):
                if obj.get("more_polygons"):  # YOLO keeps the largest part: inside the box
                    assert box[0] >= obj["box"][0] - 0.02 and box[2] <= obj["box"][2] + 0.02
                    assert box[1] >= obj["box"][1] - 0.02 and box[3] <= obj["box"][3] + 0.02
                else:
                    assert box == pytest.approx(obj["box"], abs=0.02), label["im_file"]


def test_ultralytics_reads_the_bundled_sample_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user may train on sample_data/detection_yolo itself before augmenting it: from any
    folder, Ultralytics finds its images beside data.yaml (a `path: .` sent it to the
    current folder, or to its own datasets folder)."""
    pytest.importorskip("ultralytics", reason=f"ultralytics {_OWN_ENVIRONMENT}")
    from ultralytics.data.utils import check_det_dataset

    sample = tmp_path / "detection_yolo"
    shutil.copytree(DETECTION, sample)
    monkeypatch.chdir(tmp_path)
    data = check_det_dataset(str(sample / "data.yaml"), autodownload=False)
    assert Path(data["train"]) == sample / "images" / "train"
    assert Path(data["val"]) == sample / "images" / "val"
    assert data["names"] == {0: "zero", 1: "one", 2: "seven"}
