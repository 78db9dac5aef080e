"""Annotated datasets end to end: YOLO and COCO sources through the real command with
worker processes, read back by real consumers (pycocotools; supervision in its own
environment), and the geometry of every object checked against its pixels."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.plan import NAME_SEPARATOR
from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    augment_command,
    every_file,
    file_tree,
    manifest_by_path,
    scenes,
    write_coco,
    write_voc,
    write_yolo,
)


def _run(src: Path, out: Path, recipe: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["expand", str(src), str(out), "--recipe", str(recipe), "--times", "3"]
    return subprocess.run(
        augment_command(*args, "--format", "png", "--workers", "2", *extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def yolo_out(tmp_path_factory: pytest.TempPathFactory, geometric: Path) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    src = write_yolo(root / "src", scenes(14))
    result = _run(src, root / "out", geometric, "--val", "0.2", "--test", "0.2")
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="module")
def coco_out(tmp_path_factory: pytest.TempPathFactory, geometric: Path) -> Path:
    root = tmp_path_factory.mktemp("coco")
    src = write_coco(root / "src", scenes(14))
    result = _run(src, root / "out", geometric, "--val", "0.2", "--test", "0.2")
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.fixture(scope="module")
def voc_out(tmp_path_factory: pytest.TempPathFactory, geometric: Path) -> Path:
    root = tmp_path_factory.mktemp("voc")
    src = write_voc(root / "src", scenes(14))
    result = _run(src, root / "out", geometric, "--val", "0.2", "--test", "0.2")
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.mark.slow
def test_voc_output_has_an_xml_per_image_and_image_sets(voc_out: Path) -> None:
    import xml.etree.ElementTree as ET

    records = manifest_by_path(voc_out)
    for path, record in records.items():
        xml = voc_out / record["annotation"]["file"]
        assert hashlib.sha256(xml.read_bytes()).hexdigest() == record["annotation"]["sha256"]
        doc = ET.parse(xml).getroot()
        assert f"images/{doc.findtext('folder')}/{doc.findtext('filename')}" == path
        boxes = sorted(
            (o.findtext("name"), *(float(o.findtext(f"bndbox/{k}")) for k in
                                   ("xmin", "ymin", "xmax", "ymax")))
            for o in doc.iter("object")
        )  # fmt: skip
        ours = sorted(
            (o["label"], o["box"][0] + 1, o["box"][1] + 1, o["box"][2], o["box"][3])
            for o in record["annotation"]["objects"]
        )
        assert np.allclose([b[1:] for b in boxes], [o[1:] for o in ours], atol=1e-6)
    for folder in ("train", "val", "test"):
        listed = (voc_out / "ImageSets" / "Main" / f"{folder}.txt").read_text().split()
        assert sorted(listed) == sorted(
            Path(p).stem for p in records if p.startswith(f"images/{folder}/")
        )


@pytest.mark.slow
def test_yolo_output_has_a_label_file_per_image_and_a_data_yaml(yolo_out: Path) -> None:
    data = yaml.safe_load((yolo_out / "data.yaml").read_text())
    assert data["names"] == {0: "magenta", 1: "green", 2: "blue"}
    assert {data[k] for k in ("train", "val", "test")} == {
        "images/train",
        "images/val",
        "images/test",
    }
    records = manifest_by_path(yolo_out)
    images = sorted(p.relative_to(yolo_out).as_posix() for p in yolo_out.glob("images/*/*"))
    assert images == sorted(records)
    for path, record in records.items():
        label = yolo_out / record["annotation"]["file"]
        assert label.as_posix().endswith(Path(path).with_suffix(".txt").name)
        body = label.read_bytes()
        assert hashlib.sha256(body).hexdigest() == record["annotation"]["sha256"]
        lines = body.decode().splitlines()
        assert len(lines) == sum(record["annotation"]["counts"].values())
        for line in lines:
            class_id, *coords = line.split()
            assert 0 <= int(class_id) < 3
            assert all(0 <= float(v) <= 1 for v in coords)


def test_yolo_held_out_images_are_originals_only(yolo_out: Path) -> None:
    records = manifest_by_path(yolo_out).values()
    held = [r for r in records if r["split"] != "train"]
    assert held and all(r["variant"] == 0 for r in held)
    train_sources = {s["sha256"] for r in records if r["split"] == "train" for s in r["sources"]}
    assert not train_sources & {s["sha256"] for r in held for s in r["sources"]}


@pytest.mark.slow
def test_coco_output_loads_in_pycocotools(coco_out: Path) -> None:
    from pycocotools.coco import COCO

    records = manifest_by_path(coco_out)
    for split, folder in (("train", "train"), ("validation", "val"), ("test", "test")):
        coco = COCO(str(coco_out / "annotations" / f"instances_{folder}.json"))
        ours = {Path(p).name: r for p, r in records.items() if r["split"] == split}
        assert len(coco.getImgIds()) == len(ours)
        assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == set(OBJECT_COLOURS)
        for image in coco.loadImgs(coco.getImgIds()):
            assert (coco_out / "images" / folder / image["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert len(anns) == len(ours[image["file_name"]]["annotation"]["objects"])
            for ann in anns:
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0
                assert x >= 0 and y >= 0
                assert x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
                # The outline came through too: its mask covers most of its box.
                mask = coco.annToMask(ann)
                assert mask.sum() >= 0.5 * w * h


def _colour_mask(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - colour) <= 8, axis=2)


@pytest.mark.parametrize("which", ["yolo", "coco", "voc"])
def test_every_object_lies_in_its_box_and_the_box_is_tight(
    which: str, yolo_out: Path, coco_out: Path, voc_out: Path
) -> None:
    """After flips, affine and padding (nearest-neighbour, so colours stay exact), the
    pixels of each object's colour lie inside its box, and the box hugs them."""
    out = {"yolo": yolo_out, "coco": coco_out, "voc": voc_out}[which]
    checked = 0
    for path, record in manifest_by_path(out).items():
        pixels = np.asarray(Image.open(out / path).convert("RGB"))
        assert list(pixels.shape[1::-1]) == record["annotation"]["size"]
        kept = {o["label"]: o["box"] for o in record["annotation"]["objects"]}
        for label, colour in OBJECT_COLOURS.items():
            ys, xs = np.nonzero(_colour_mask(pixels, colour))
            if label not in kept:
                assert label in record["annotation"]["dropped"] or len(xs) == 0, path
                continue
            x0, y0, x1, y1 = kept[label]
            assert len(xs), (path, label)
            assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1, (path, label)
            assert ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1, (path, label)
            # Tight: within 2 pixels of the object's extent on every side (a rotated
            # rectangle's corners are single pixels that nearest-neighbour may miss).
            assert xs.min() - x0 <= 2 and x1 - (xs.max() + 1) <= 2, (path, label, kept[label])
            assert ys.min() - y0 <= 2 and y1 - (ys.max() + 1) <= 2, (path, label, kept[label])
            checked += 1
    assert checked > 40


WRITERS = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["yolo", "coco", "voc", "masks"])
def test_workers_1_and_2_make_the_same_bytes(tmp_path: Path, geometric: Path, which: str) -> None:
    from tests.helpers import write_masks

    # 72 outputs: three shards, so that a second process really takes part.
    src = {**WRITERS, "masks": write_masks}[which](tmp_path / "src", scenes(24))
    for workers in (1, 2):
        options = ExpandOptions(times=3, recipe=str(geometric), workers=workers)
        expand(src, tmp_path / f"out{workers}", options)
    assert file_tree(tmp_path / "out1") == file_tree(tmp_path / "out2")


@pytest.mark.parametrize("which", ["coco", "voc"])
def test_a_rerun_writes_nothing(tmp_path: Path, geometric: Path, which: str) -> None:
    src = WRITERS[which](tmp_path / "src", scenes(6))
    options = ExpandOptions(times=2, recipe=str(geometric), workers=2)
    expand(src, tmp_path / "out", options)
    before = every_file(tmp_path / "out")
    assert expand(src, tmp_path / "out", options).written == 0
    assert every_file(tmp_path / "out") == before


def test_a_rerun_writes_nothing_and_an_edited_label_remakes_only_its_image(
    tmp_path: Path, geometric: Path
) -> None:
    src = write_yolo(tmp_path / "src", scenes(8))
    out = tmp_path / "out"
    options = ExpandOptions(times=3, recipe=str(geometric), workers=2)
    expand(src, out, options)
    before = every_file(out)
    summary = expand(src, out, options)
    assert summary.written == 0
    assert every_file(out) == before
    old = set(manifest_by_path(out))
    label = src / "labels" / "scene_01.txt"
    label.write_text(label.read_text() + "2 0.8 0.8 0.1 0.1\n")
    summary = expand(src, out, options)
    new = set(manifest_by_path(out))
    changed = {Path(p).name.split(NAME_SEPARATOR)[0] for p in old ^ new}
    assert changed == {"scene_01"}
    assert summary.written == len(new - old) == 3
    assert sorted(
        p.name for p in (out / "labels").rglob(f"scene_01{NAME_SEPARATOR}*.txt")
    ) == sorted(Path(p).with_suffix(".txt").name for p in new if f"scene_01{NAME_SEPARATOR}" in p)


def test_a_pre_split_yolo_set_keeps_its_split(tmp_path: Path, geometric: Path) -> None:
    made = scenes(10)
    split_of = {stem: ("val" if i % 4 == 0 else "train") for i, (stem, *_) in enumerate(made)}
    src = write_yolo(tmp_path / "src", made, split_of)
    expand(src, tmp_path / "out", ExpandOptions(times=2, recipe=str(geometric), workers=1))
    for record in manifest_by_path(tmp_path / "out").values():
        stem = Path(record["sources"][0]["path"]).stem
        assert record["split"] == {"val": "validation", "train": "train"}[split_of[stem]]


@pytest.mark.slow
def test_blur_padding_and_mirroring_borders_are_refused_for_an_annotated_set(
    tmp_path: Path,
) -> None:
    src = write_yolo(tmp_path / "src", scenes(4))
    recipe = tmp_path / "blur.yaml"
    recipe.write_text(GEOMETRIC_RECIPE.replace("pad_mode: constant", "pad_mode: blur"))
    result = _run(src, tmp_path / "out", recipe)
    assert result.returncode == 2
    assert "pad_mode 'blur' shows the image blurred in the border" in result.stderr
    assert "Traceback" not in result.stderr
    recipe.write_text(GEOMETRIC_RECIPE.replace("border_mode: constant", "border_mode: reflect"))
    result = _run(src, tmp_path / "out", recipe)
    assert result.returncode == 2
    assert "Affine border_mode 'reflect_101' mirrors objects" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("pad_mode", ["reflect", "wrap"])
def test_a_mirroring_pad_labels_the_mirrored_objects(tmp_path: Path, pad_mode: str) -> None:
    """A reflect or wrap pad shows objects again in the border: a mask set's masks cover
    exactly the pixels of each class's colour in every output (the copies included, after
    flips and affine), and a YOLO set's outputs have boxes for the copies, each hugging
    pixels of its colour, which the audit passes."""
    from augment.commands.audit import audit_output
    from tests.helpers import write_masks

    # Tall sources (80 x 104 into 128 x 112): 24 pixels of pad each side, objects near the edge.
    made = [(s, 80, 104, [o for o in objects if o[1][2] <= 80]) for s, _, _, objects in scenes(8)]
    recipe = tmp_path / "mirror.yaml"
    recipe.write_text(GEOMETRIC_RECIPE.replace("pad_mode: constant", f"pad_mode: {pad_mode}"))
    masks_out, yolo_out, plain = tmp_path / "masks", tmp_path / "yolo", tmp_path / "plain"
    for make, out in ((write_masks, masks_out), (write_yolo, yolo_out)):
        result = _run(make(tmp_path / f"src-{out.name}", made), out, recipe)
        assert result.returncode == 0 and "rejected" not in result.stderr, result.stderr
    names = list(OBJECT_COLOURS)
    for path, record in manifest_by_path(masks_out).items():
        ids = np.asarray(Image.open(masks_out / record["annotation"]["file"]))
        pixels = np.asarray(Image.open(masks_out / path).convert("RGB"))
        for class_id, name in enumerate(names, start=1):
            assert (_colour_mask(pixels, OBJECT_COLOURS[name]) == (ids == class_id)).all()
    constant = tmp_path / "constant.yaml"
    constant.write_text(GEOMETRIC_RECIPE)
    assert _run(tmp_path / "src-yolo", plain, constant).returncode == 0
    count = {
        out: sum(len(r["annotation"]["objects"]) for r in manifest_by_path(out).values())
        for out in (yolo_out, plain)
    }
    assert count[yolo_out] > count[plain]
    for path, record in manifest_by_path(yolo_out).items():
        pixels = np.asarray(Image.open(yolo_out / path).convert("RGB"))
        for obj in record["annotation"]["objects"]:
            x0, y0, x1, y1 = (round(v) for v in obj["box"])
            assert _colour_mask(pixels[y0:y1, x0:x1], OBJECT_COLOURS[obj["label"]]).any()
    assert [f for f in audit_output(yolo_out).findings if f.check == "annotations"] == []


def test_a_bundled_detection_recipe_runs_on_the_sample_set(tmp_path: Path) -> None:
    from tests.helpers import DETECTION, ROOT

    src = tmp_path / "src"
    shutil.copytree(DETECTION, src)
    recipe = ROOT / "pipelines" / "detection.yaml"
    summary = expand(src, tmp_path / "out", ExpandOptions(times=2, recipe=str(recipe), workers=2))
    assert summary.total == 20 * 2 + 4 and not summary.rejected  # 4 pre-split val images
    assert file_tree(src) == file_tree(DETECTION)  # the source is never written
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"] == {0: "zero", 1: "one", 2: "seven"}
    header = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert header["annotations"]["min_visibility"] == 0.25


def test_the_yolo_output_loads_in_supervision(yolo_out: Path) -> None:
    """A third-party YOLO loader reads every split as written. supervision pulls its own
    OpenCV wheel, which cannot share an environment with opencv-python-headless, so it
    lives in a separate environment (.ci/run, "annotated consumers"); elsewhere this skips."""
    sv = pytest.importorskip(
        "supervision", reason="supervision needs its own environment (a second OpenCV)"
    )
    data = yaml.safe_load((yolo_out / "data.yaml").read_text())
    records = manifest_by_path(yolo_out)
    for folder in ("train", "val", "test"):
        dataset = sv.DetectionDataset.from_yolo(
            images_directory_path=str(yolo_out / data[folder]),
            annotations_directory_path=str(yolo_out / "labels" / folder),
            data_yaml_path=str(yolo_out / "data.yaml"),
        )
        assert dataset.classes == ["magenta", "green", "blue"]
        assert len(dataset) == sum(1 for p in records if p.startswith(f"images/{folder}/"))
        for path, _image, detections in dataset:
            record = records[Path(path).relative_to(yolo_out).as_posix()]
            objects = record["annotation"]["objects"]
            assert len(detections) == len(objects)
            ours = sorted((o["label"], *o["box"]) for o in objects)
            theirs = sorted(
                (dataset.classes[c], *box)
                for c, box in zip(detections.class_id, detections.xyxy.tolist(), strict=True)
            )
            for a, b in zip(ours, theirs, strict=True):
                assert a[0] == b[0]
                assert np.allclose(a[1:], b[1:], atol=0.01)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    """Killed after a few images, then rerun: the same files (label files, data.yaml and
    manifest included) as a run never interrupted."""
    import os
    import signal
    import time

    from tests.helpers import DETECTION, ROOT

    recipe = str(ROOT / "pipelines" / "detection.yaml")
    options = ExpandOptions(times=3, recipe=recipe, workers=1)
    expand(DETECTION, tmp_path / "clean", options)
    out = tmp_path / "out"
    args = ["expand", str(DETECTION), str(out), "--recipe", recipe, "--times", "3", "-j", "2"]
    proc = subprocess.Popen(
        augment_command(*args, "--quiet"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and len(list(out.glob("images/*/*.jpg"))) >= 5:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    expand(DETECTION, out, options)
    assert file_tree(out) == file_tree(tmp_path / "clean")


def test_coco_outlines_are_the_warped_objects(coco_out: Path) -> None:
    """Each object's outline, rasterised by pycocotools, covers the pixels of its colour
    (the rectangle as flipped, rotated and scaled): intersection over union above 0.85."""
    from pycocotools.coco import COCO

    checked = 0
    for folder in ("train", "val", "test"):
        coco = COCO(str(coco_out / "annotations" / f"instances_{folder}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            pixels = np.asarray(Image.open(coco_out / "images" / folder / image["file_name"]))
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
                drawn = _colour_mask(pixels[..., :3], OBJECT_COLOURS[names[ann["category_id"]]])
                outline = coco.annToMask(ann).astype(bool)
                iou = (drawn & outline).sum() / (drawn | outline).sum()
                assert iou > 0.85, (image["file_name"], names[ann["category_id"]], iou)
                checked += 1
    assert checked > 40


@pytest.fixture(scope="module")
def masks_out(tmp_path_factory: pytest.TempPathFactory, geometric: Path) -> Path:
    from tests.helpers import write_masks

    root = tmp_path_factory.mktemp("masks")
    src = write_masks(root / "src", scenes(14))
    result = _run(src, root / "out", geometric, "--val", "0.2", "--test", "0.2")
    assert result.returncode == 0, result.stderr
    return root / "out"


@pytest.mark.slow
def test_masks_equal_the_warped_objects(masks_out: Path) -> None:
    """Every output's mask (class ids, nearest-neighbour) covers exactly the pixels its
    image shows in that class's colour, after flips, affine and padding."""
    names = list(OBJECT_COLOURS)
    records = manifest_by_path(masks_out)
    checked = 0
    for path, record in records.items():
        mask_file = masks_out / record["annotation"]["file"]
        assert hashlib.sha256(mask_file.read_bytes()).hexdigest() == record["annotation"]["sha256"]
        ids = np.asarray(Image.open(mask_file))
        pixels = np.asarray(Image.open(masks_out / path).convert("RGB"))
        assert ids.shape == pixels.shape[:2]
        assert set(np.unique(ids).tolist()) <= {0, 1, 2, 3}
        for class_id, name in enumerate(names, start=1):
            drawn = _colour_mask(pixels, OBJECT_COLOURS[name])
            labelled = ids == class_id
            assert (drawn == labelled).all(), (path, name)
            if labelled.any():
                ys, xs = np.nonzero(labelled)
                box = next(o["box"] for o in record["annotation"]["objects"] if o["label"] == name)
                assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                checked += 1
    assert checked > 40


@pytest.mark.slow
def test_a_pre_split_set_refuses_holdout_options_unless_resplit(
    tmp_path: Path, geometric: Path
) -> None:
    made = scenes(12)
    split_of = {stem: ("val" if i % 4 == 0 else "train") for i, (stem, *_) in enumerate(made)}
    src = write_yolo(tmp_path / "src", made, split_of)
    refused = _run(src, tmp_path / "out", geometric, "--val", "0.3")
    assert refused.returncode == 2 and "already split" in refused.stderr
    resplit = _run(src, tmp_path / "out2", geometric, "--val", "0.3", "--resplit")
    assert resplit.returncode == 0, resplit.stderr
    splits = {
        r["sources"][0]["path"]: r["split"] for r in manifest_by_path(tmp_path / "out2").values()
    }
    assert any(
        s == "train" and split_of[Path(p).stem] == "val" for p, s in splits.items()
    )  # held out again: a source val image went to train


@pytest.mark.slow
def test_objects_a_crop_drops_are_counted_per_class(tmp_path: Path) -> None:
    """A centre crop cuts the objects near the scenes' left edge: each output's record, the
    header and the printed summary count them per class, and they agree."""
    recipe = tmp_path / "crop.yaml"
    recipe.write_text("description: crop\npreprocess: {size: [32, 64], fit: crop}\naugment: []\n")
    src = write_yolo(tmp_path / "src", scenes(12))
    result = _run(src, tmp_path / "out", recipe, "--times", "1")
    assert result.returncode == 0, result.stderr
    per_record = Counter()
    for record in manifest_by_path(tmp_path / "out").values():
        per_record.update(record["annotation"]["dropped"])
    header = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert per_record and dict(per_record) == header["annotations"]["dropped"]
    shown = ", ".join(f"{label} {n}" for label, n in sorted(per_record.items()))
    assert f"objects dropped by the transforms (too little left): {shown}" in result.stdout


def test_an_annotated_output_holds_only_its_format_s_files(
    yolo_out: Path, coco_out: Path, voc_out: Path, masks_out: Path
) -> None:
    """No class folders, dataset card or classes.json (those are for classification sets)."""
    top = {"augment.json", "manifest.jsonl", "images"}
    assert {p.name for p in yolo_out.iterdir() if p.name != ".augment"} == top | {
        "data.yaml",
        "labels",
    }
    assert {p.name for p in coco_out.iterdir() if p.name != ".augment"} == top | {"annotations"}
    assert {p.name for p in voc_out.iterdir() if p.name != ".augment"} == top | {
        "Annotations",
        "ImageSets",
    }
    assert {p.name for p in masks_out.iterdir() if p.name != ".augment"} == top | {"masks"}
