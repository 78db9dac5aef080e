"""Copy-paste end to end: instances of a second train original pasted through the real
command, the pasted pixels compared with the source instance warped by the recorded jitter,
lineage audited, reruns and worker counts compared (the pixel functions alone:
tests/recipe/test_copy_paste.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from augment.annotations.shapes import polygons_mask
from augment.commands.audit import audit_output
from augment.commands.preview import PreviewOptions, preview
from augment.model import ExpandOptions, LabeledObject
from augment.recipe.annotated import preprocess_objects
from augment.recipe.build import load_recipe
from augment.recipe.preprocess import apply_preprocess
from augment.run import expand
from tests.helpers import (
    GEOMETRIC_RECIPE,
    OBJECT_COLOURS,
    TEXTURES,
    augment_command,
    every_file,
    file_tree,
    manifest_by_path,
    scenes,
    write_coco,
    write_masks,
    write_yolo,
)

# Unrotated (every box exact) and nearest-neighbour: a pasted object keeps its colour.
PASTE_RECIPE = (
    GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0")
    + "mix:\n  - CopyPaste: {p: 1.0, max_per_output: 2, scale: [0.6, 1.6]}\n"
)


NEAREST = cv2.INTER_NEAREST_EXACT  # the recipe's `interpolation: nearest`


def _entry(record: dict) -> dict | None:
    return next((p for p in record["params"] if p["transform"] == "CopyPaste"), None)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "paste.yaml"
    path.write_text(PASTE_RECIPE)
    return path


@pytest.fixture(scope="module")
def pasted_out(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> tuple[Path, Path]:
    """14 COCO scenes (outlines), a fifth held out for validation and for test; every
    variant pasted."""
    root = tmp_path_factory.mktemp("paste")
    src = write_coco(root / "src", scenes(14))
    args = ["expand", str(src), str(root / "out"), "--recipe", str(recipe), "--times", "3"]
    args += ["--val", "0.2", "--test", "0.2", "--format", "png", "--workers", "2"]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return src, root / "out"


def _source_objects(src: Path) -> dict[str, list[LabeledObject]]:
    doc = json.loads((src / "annotations" / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    files = {i["id"]: f"images/{i['file_name']}" for i in doc["images"]}
    out: dict[str, list[LabeledObject]] = {f: [] for f in files.values()}
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        out[files[a["image_id"]]].append(
            LabeledObject(
                names[a["category_id"]], (x, y, x + w, y + h), tuple(a["segmentation"][0])
            )
        )
    return out


@pytest.mark.slow
def test_a_pasted_instance_is_the_source_instance_warped_exactly(
    pasted_out: tuple[Path, Path], recipe: Path
) -> None:
    """The last instance pasted (no later paste covers it) is, pixel for pixel, the partner's
    preprocessed instance flipped and scaled nearest-neighbour as the record says; its box
    is tight around it and it is the last object of the record."""
    src, out = pasted_out
    spec = load_recipe(str(recipe)).preprocess
    objects = _source_objects(src)
    pasted = [r for r in manifest_by_path(out).values() if _entry(r)]
    assert len(pasted) == 2 * 8  # 8 train originals (14, less 3 + 3 held out), 2 variants
    for record in pasted:
        entry = _entry(record)
        assert entry is not None and entry["instances"], record["path"]
        last = entry["instances"][-1]
        source = np.asarray(Image.open(src / entry["partner"]).convert("RGB"))
        prepared = apply_preprocess(source, spec)
        size = (source.shape[1], source.shape[0])
        (obj,), _ = preprocess_objects([objects[entry["partner"]][last["index"]]], size, size, spec)
        ys, xs = np.nonzero(polygons_mask([obj.polygon], *spec.size))  # the instance's pixels
        crop = prepared[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        crop = crop[:, ::-1] if last["flip"] else crop
        (nw, nh), (px, py) = last["size"], last["at"]
        warped = cv2.resize(np.ascontiguousarray(crop), (nw, nh), interpolation=NEAREST)
        pixels = np.asarray(Image.open(out / record["path"]).convert("RGB"))
        assert (pixels[py : py + nh, px : px + nw] == warped).all(), record["path"]
        assert (pixels[py : py + nh, px : px + nw] == OBJECT_COLOURS[obj.label]).all()
        placed = record["annotation"]["objects"][-1]
        assert placed["label"] == obj.label
        assert placed["box"] == [px, py, px + nw, py + nh]  # tight: the pasted pixels' box


def test_both_sources_are_train_originals_weighted_by_their_pixels(
    pasted_out: tuple[Path, Path],
) -> None:
    _, out = pasted_out
    header = json.loads((out / "augment.json").read_text())
    split_of = {h["path"]: h["split"] for h in header["holdout"]}
    assert {"validation", "test"} <= set(split_of.values())
    for record in manifest_by_path(out).values():
        entry = _entry(record)
        if entry is None:
            continue
        own, partner = record["sources"]
        assert partner["path"] == entry["partner"] != own["path"]
        assert split_of[own["path"]] == split_of[partner["path"]] == "train"
        assert 0 < partner["weight"] < 0.5 and own["weight"] + partner["weight"] == 1


@pytest.mark.slow
def test_the_audit_passes_and_flags_a_planted_held_out_partner(
    pasted_out: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = pasted_out
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(out).findings if f.check in checks]
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    records = [json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines()]
    held = next(r for r in records if r["split"] == "validation")["sources"][0]
    pasted = next(r for r in records if _entry(r))
    pasted["sources"][1] = {**held, "weight": pasted["sources"][1]["weight"]}
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    found = [(f.kind, f.paths) for f in audit_output(copy).findings if f.check == "lineage"]
    assert found == [("held-out-source", (pasted["path"], held["path"]))]


@pytest.mark.slow
def test_copy_paste_workers_1_and_2_make_the_same_bytes_and_a_rerun_writes_nothing(
    tmp_path: Path, recipe: Path
) -> None:
    src = write_coco(tmp_path / "src", scenes(24))  # 48 pasted variants: several shards
    for workers in (1, 2):
        options = ExpandOptions(times=3, recipe=str(recipe), workers=workers)
        expand(src, tmp_path / f"out{workers}", options)
    assert file_tree(tmp_path / "out1") == file_tree(tmp_path / "out2")
    before = every_file(tmp_path / "out2")
    options = ExpandOptions(times=3, recipe=str(recipe), workers=2)
    assert expand(src, tmp_path / "out2", options).written == 0
    assert every_file(tmp_path / "out2") == before


def test_a_segmentation_set_pastes_its_classes_pixels_and_mask(
    tmp_path: Path, recipe: Path
) -> None:
    src = write_masks(tmp_path / "src", scenes(8))
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1)
    expand(src, tmp_path / "out", options)
    records = [r for r in manifest_by_path(tmp_path / "out").values() if _entry(r)]
    assert len(records) == 8
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(tmp_path / "out").findings if f.check in checks]
    for record in records:  # the mask lies exactly under its class's colour
        pixels = np.asarray(Image.open(tmp_path / "out" / record["path"]).convert("RGB"))
        mask = np.asarray(Image.open(tmp_path / "out" / record["annotation"]["file"]))
        for class_id, colour in enumerate(OBJECT_COLOURS.values(), start=1):
            assert ((mask == class_id) == np.all(pixels == colour, axis=2)).all()


def test_preview_shows_pasted_outputs_with_their_boxes(tmp_path: Path, recipe: Path) -> None:
    src = write_coco(tmp_path / "src", scenes(10))
    sheet = preview(src, PreviewOptions(recipe=str(recipe), rows=2, variants=2, cell=128))
    pixels = np.asarray(sheet.image.convert("RGB"))
    for row in sheet.rows:
        for cell in row[1:]:
            x0, y0, x1, y1 = cell.box
            assert pixels[y0:y1, x0:x1].std() > 0


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("yolo", "CopyPaste needs objects with an outline (polygon) or a mask"),
        ("classes", "names class 'nine'"),
        ("textures", "CopyPaste is for annotated datasets"),
    ],
)
@pytest.mark.slow
def test_what_copy_paste_cannot_use_is_a_clear_error(
    tmp_path: Path, which: str, message: str
) -> None:
    recipe = tmp_path / "r.yaml"
    if which == "classes":  # a class the dataset does not have
        recipe.write_text(PASTE_RECIPE.replace("max_per_output: 2", "classes: [nine]"))
        src = write_coco(tmp_path / "src", scenes(6))
    else:
        recipe.write_text(PASTE_RECIPE)
        src = write_yolo(tmp_path / "src", scenes(6)) if which == "yolo" else TEXTURES
    args = ["expand", str(src), str(tmp_path / "out"), "--recipe", str(recipe)]
    result = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_yolo_set_with_polygon_lines_pastes_and_writes_outlines(
    tmp_path: Path, recipe: Path
) -> None:
    """YOLO segmentation lines (`class x1 y1 x2 y2 ...`) are outlines: instances to paste;
    the output's label files carry the pasted objects' outlines and pass the audit."""
    src = write_yolo(tmp_path / "src", scenes(8))
    for labels in (src / "labels").glob("*.txt"):  # each box line as its rectangle's outline
        lines = []
        for row in labels.read_text().splitlines():
            c, x, y, w, h = row.split()
            x0, y0 = float(x) - float(w) / 2, float(y) - float(h) / 2
            x1, y1 = float(x) + float(w) / 2, float(y) + float(h) / 2
            lines.append(
                f"{c} {x0:.6f} {y0:.6f} {x1:.6f} {y0:.6f} {x1:.6f} {y1:.6f} {x0:.6f} {y1:.6f}"
            )
        labels.write_text("".join(line + "\n" for line in lines))
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1)
    expand(src, tmp_path / "out", options)
    records = [r for r in manifest_by_path(tmp_path / "out").values() if _entry(r)]
    assert len(records) == 8
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(tmp_path / "out").findings if f.check in checks]
    for record in records:
        rows = (tmp_path / "out" / record["annotation"]["file"]).read_text().splitlines()
        assert len(rows) == len(record["annotation"]["objects"])
        assert len(rows[-1].split()) >= 7  # the last pasted instance: a polygon line
