"""`augment audit` and `augment preview` on annotated (detection) sets: a clean output passes
the `annotations` check, a tampered label or COCO file is found, and the preview draws each
object's box where its pixels are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment.commands.audit import AuditOptions, audit_output
from augment.commands.preview import PreviewOptions, preview
from augment.commands.preview_boxes import class_colour
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import GEOMETRIC_RECIPE, manifest_by_path, scenes, write_coco, write_yolo


@pytest.fixture()
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "geometric.yaml"
    path.write_text(GEOMETRIC_RECIPE)
    return path


def _expanded(tmp_path: Path, recipe: Path, which: str) -> Path:
    write = write_yolo if which == "yolo" else write_coco
    src = write(tmp_path / "src", scenes(12))
    options = ExpandOptions(times=2, recipe=str(recipe), workers=1, val=0.25, test=0.25)
    expand(src, tmp_path / "out", options)
    return tmp_path / "out"


@pytest.mark.parametrize("which", ["yolo", "coco"])
def test_a_clean_annotated_output_passes_the_annotation_check(
    tmp_path: Path, recipe: Path, which: str
) -> None:
    report = audit_output(_expanded(tmp_path, recipe, which))
    assert "annotations" in report.checks
    assert [f for f in report.findings if f.check in ("annotations", "integrity")] == []
    assert set(report.counts["train"]) == {"magenta", "green", "blue"}


def test_an_edited_label_file_is_found(tmp_path: Path, recipe: Path) -> None:
    out = _expanded(tmp_path, recipe, "yolo")
    record = next(r for r in manifest_by_path(out).values() if r["annotation"]["objects"])
    label = out / record["annotation"]["file"]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    kinds = {(f.kind, f.paths) for f in audit_output(out).findings if f.check == "annotations"}
    assert kinds == {("label-file-changed", (record["path"],))}


def test_a_coco_file_missing_objects_is_found(tmp_path: Path, recipe: Path) -> None:
    out = _expanded(tmp_path, recipe, "coco")
    path = out / "annotations" / "instances_train.json"
    doc = json.loads(path.read_text())
    dropped = doc["annotations"].pop(0)
    path.write_text(json.dumps(doc))
    image = next(i for i in doc["images"] if i["id"] == dropped["image_id"])
    found = [f for f in audit_output(out).findings if f.kind == "coco-mismatch"]
    assert [f.paths for f in found] == [(f"images/train/{image['file_name']}",)]


def test_a_moved_box_in_a_coco_file_is_found_by_object(tmp_path: Path, recipe: Path) -> None:
    out = _expanded(tmp_path, recipe, "coco")
    path = out / "annotations" / "instances_val.json"
    doc = json.loads(path.read_text())
    moved = doc["annotations"][-1]
    moved["bbox"][1] += 2
    path.write_text(json.dumps(doc))
    image = next(i for i in doc["images"] if i["id"] == moved["image_id"])
    n = [a["id"] for a in doc["annotations"] if a["image_id"] == image["id"]].index(moved["id"])
    (found,) = [f for f in audit_output(out).findings if f.kind == "coco-mismatch"]
    assert found.paths == (f"images/val/{image['file_name']}",)
    assert f"object {n + 1} (" in found.message and "in the manifest" in found.message


def test_the_preview_draws_each_box_in_its_class_colour(tmp_path: Path, recipe: Path) -> None:
    made = scenes(6)
    src = write_yolo(tmp_path / "src", made)
    classes = {f"images/{stem}.png": {label for label, _ in objects} for stem, *_, objects in made}
    sheet = preview(src, PreviewOptions(recipe=str(recipe), rows=3, variants=2, cell=144))
    pixels = np.asarray(sheet.image)
    for row in sheet.rows:
        for cell in row:
            x0, y0, x1, y1 = cell.box
            region = pixels[y0 : y1 + 12, x0:x1]  # the label may sit just below a box's top
            drawn = {
                name
                for name in ("magenta", "green", "blue")
                if np.all(region == class_colour(name), axis=2).sum() > 20
            }
            assert drawn == classes[cell.source], (cell.source, cell.variant)


def test_a_mask_is_laid_over_its_thumbnail_in_its_class_colour() -> None:
    from augment.annotations.masks import encode_mask
    from augment.commands.preview_boxes import overlay_mask

    thumb = np.full((40, 60, 3), 100, np.uint8)
    ids = np.zeros((80, 120), np.uint8)  # twice the thumbnail: scaled nearest-neighbour
    ids[20:60, 30:90] = 2
    out = overlay_mask(thumb, encode_mask(ids), ["background", "cat", "dog"])
    tint = np.round(100 * 0.55 + np.array(class_colour("dog")) * 0.45)
    assert (out[10:30, 15:45] == tint).all()
    assert (out[:10] == 100).all() and (out[:, :15] == 100).all()


def test_the_preview_of_a_mask_set_shows_its_cells(tmp_path: Path, recipe: Path) -> None:
    from tests.helpers import write_masks

    src = write_masks(tmp_path / "src", scenes(6))
    sheet = preview(src, PreviewOptions(recipe=str(recipe), rows=3, variants=1, cell=144))
    assert len(sheet.rows) == 3 and all(len(row) == 2 for row in sheet.rows)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["yolo", "coco"])
def test_held_out_objects_equal_their_source_s_labels(
    tmp_path: Path, recipe: Path, which: str
) -> None:
    """With --source, every held-out output's objects are compared with its original's
    labels as preprocessed: a clean run has no finding; a source label edited afterwards
    is found on that image's held-out output, naming the object."""
    out = _expanded(tmp_path, recipe, which)
    src = tmp_path / "src"
    options = AuditOptions(source=src)
    assert [f for f in audit_output(out, options).findings if f.check == "annotations"] == []
    held = next(
        r for r in manifest_by_path(out).values()
        if r["split"] != "train" and r["annotation"]["objects"]
    )  # fmt: skip
    stem = Path(held["sources"][0]["path"]).stem
    if which == "yolo":
        label = src / "labels" / f"{stem}.txt"
        first, *rest = label.read_text().splitlines()
        cls, cx, *size = first.split()
        label.write_text("\n".join([f"{cls} {float(cx) + 0.05:.6f} {' '.join(size)}", *rest]))
    else:
        path = src / "annotations" / "instances.json"
        doc = json.loads(path.read_text())
        image_id = next(i["id"] for i in doc["images"] if i["file_name"] == f"{stem}.png")
        ann = next(a for a in doc["annotations"] if a["image_id"] == image_id)
        ann["bbox"][0] += 4
        path.write_text(json.dumps(doc))
    found = [f for f in audit_output(out, options).findings if f.kind == "held-out-objects"]
    assert [f.paths for f in found] == [(held["path"],)]
    assert "object 1 (" in found[0].message and "in the preprocessed original" in found[0].message


def test_held_out_masks_equal_their_source_s_masks(tmp_path: Path, recipe: Path) -> None:
    from tests.helpers import write_masks

    src = write_masks(tmp_path / "src", scenes(10))
    options = ExpandOptions(times=2, recipe=str(recipe), workers=1, val=0.25, test=0.25)
    expand(src, tmp_path / "out", options)
    out = tmp_path / "out"
    audit = AuditOptions(source=src)
    assert [f for f in audit_output(out, audit).findings if f.check == "annotations"] == []
    held = next(
        r for r in manifest_by_path(out).values()
        if r["split"] != "train" and r["annotation"]["objects"]
    )  # fmt: skip
    mask = src / "masks" / (Path(held["sources"][0]["path"]).stem + ".png")
    ids = np.asarray(Image.open(mask)).copy()
    ids[:3, :3] = 2
    Image.fromarray(ids, "L").save(mask)
    found = [f for f in audit_output(out, audit).findings if f.kind == "held-out-objects"]
    assert [f.paths for f in found] == [(held["path"],)]
    assert "differs from the preprocessed original's at 9 pixels" in found[0].message


@pytest.mark.slow
def test_audit_source_through_the_command(tmp_path: Path, recipe: Path) -> None:
    """`augment audit OUT --source SRC`: exit 0 on a clean output; a held-out original whose
    image changed since the run is a finding (exit 1) naming it; a source that is not an
    annotated set cannot be compared (exit 2)."""
    import subprocess

    from tests.helpers import DIGITS, augment_command

    out, src = _expanded(tmp_path, recipe, "yolo"), tmp_path / "src"
    audit = augment_command("audit", str(out), "--source", str(src))
    assert subprocess.run(audit, capture_output=True, text=True, timeout=120).returncode == 0
    held = next(r for r in manifest_by_path(out).values() if r["split"] != "train")
    image = src / held["sources"][0]["path"]
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    result = subprocess.run(audit, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"{held['path']}: its original {held['sources'][0]['path']} changed" in result.stdout
    other = augment_command("audit", str(out), "--source", str(DIGITS))
    result = subprocess.run(other, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "is not an annotated dataset" in result.stderr
