"""The YOLO (Ultralytics) layout: `images/`, `labels/` with one `.txt` per image
(`class cx cy w h`, normalised, or `class x1 y1 x2 y2 ...` for a polygon outline) and a
`data.yaml` naming the classes. `images/train`, `images/val`, `images/test` keep the user's
split. A missing or empty label file is an image without objects (a negative).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from augment.annotations.objects import SPLIT_FOLDERS, Listed, RawObject
from augment.defaults import IMAGE_EXTENSIONS
from augment.errors import DatasetError
from augment.model import LabeledObject

DATA_YAML = "data.yaml"
INPUT_SPLITS = {"train": "train", "val": "validation", "valid": "validation",
                 "validation": "validation", "test": "test"}  # fmt: skip


def read_names(root: Path) -> list[str]:
    """The class names of `data.yaml`, in id order (`names: [a, b]` or `{0: a, 1: b}`)."""
    import yaml  # YOLO sources' only: a command reading none does without

    path = root / DATA_YAML
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{root} has images/ and labels/ but no {DATA_YAML}: a YOLO dataset needs one "
            "with the class names (names: [cat, dog, ...])"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            ids = []
        if ids != list(range(len(names))):
            raise DatasetError(f"{path}: names must map the ids 0..{len(names) - 1} to names")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path} needs a non-empty 'names' list of class names")
    if len({str(n) for n in names}) != len(names):
        raise DatasetError(f"{path}: a class name is listed twice in 'names'")
    return [str(n) for n in names]


def list_images(root: Path, names: Sequence[str]) -> Iterable[Listed]:
    """Every image under images/ with its label file's objects."""
    images = root / "images"
    for dirpath, dirnames, filenames in os.walk(images):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(images)
        split = INPUT_SPLITS.get(rel_dir.parts[0].lower()) if rel_dir.parts else None
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            stem_rel = (rel_dir / os.path.splitext(name)[0]).as_posix()
            label_rel = f"labels/{stem_rel}.txt"
            yield _listed(root, f"images/{(rel_dir / name).as_posix()}", label_rel, names, split)


def _listed(
    root: Path, image: str, label_rel: str, names: Sequence[str], split: str | None
) -> Listed:
    try:
        data = (root / label_rel).read_bytes()
    except FileNotFoundError:
        data = b""  # no label file: an image without objects
    except OSError as exc:
        return Listed(image, label_rel, "", split=split, problem=f"cannot read {label_rel}: {exc}")
    listed = Listed(image, label_rel, hashlib.sha256(data).hexdigest(), split=split)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        listed.problem = f"{label_rel} is not UTF-8 text"
        return listed
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            parsed = _parse_line(line, f"{label_rel} line {line_no}", names)
            if isinstance(parsed, str):
                listed.problem = parsed
                return listed
            listed.objects.append(parsed)
    return listed


def _parse_line(line: str, where: str, names: Sequence[str]) -> RawObject | str:
    fields = line.split()
    try:
        class_id = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return f"{where}: expected 'class cx cy w h' numbers, found {line.strip()!r}"
    if not 0 <= class_id < len(names):
        return f"{where}: class id {class_id} is not in data.yaml's names (0..{len(names) - 1})"
    if len(values) == 4:
        cx, cy, w, h = values
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        return RawObject(names[class_id], box, normalised=True, where=where)
    if len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        box = (min(xs), min(ys), max(xs), max(ys))
        return RawObject(names[class_id], box, tuple(values), normalised=True, where=where)
    return f"{where}: expected 5 numbers (class cx cy w h) or a polygon, found {len(fields)}"


def label_text(
    objects: Sequence[LabeledObject], size: tuple[int, int], names: Sequence[str]
) -> str:
    """An output's label file: boxes as `class cx cy w h`, polygons as `class x y x y ...`,
    normalised, at 6 decimals (what Ultralytics writes).

    A YOLO line has one polygon: a multi-part outline keeps its largest part. Crowd regions
    are left out (Ultralytics has none). When some objects of an image have an outline and
    others only a box, the boxes are written as 4-corner polygons: Ultralytics reads every
    line of a file as a polygon once one is, and would take `cx cy w h` for two vertices."""
    width, height = size
    ids = {name: i for i, name in enumerate(names)}
    kept = [o for o in objects if not o.crowd]
    outlined = any(o.polygon for o in kept)
    lines = []
    for o in kept:
        x0, y0, x1, y1 = o.box
        if o.polygon:
            polygon = max(o.polygons, key=_area)
        elif outlined:
            polygon = (x0, y0, x1, y0, x1, y1, x0, y1)
        else:
            polygon = ()
        if polygon:
            coords = [v / (width if i % 2 == 0 else height) for i, v in enumerate(polygon)]
        else:
            coords = [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                      (y1 - y0) / height]  # fmt: skip
        lines.append(" ".join([str(ids[o.label]), *(f"{v:.6f}" for v in coords)]))
    return "".join(line + "\n" for line in lines)


def _area(polygon: Sequence[float]) -> float:
    """A polygon's area (the shoelace formula)."""
    xs, ys = polygon[0::2], polygon[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def data_yaml(names: Sequence[str], splits: Iterable[str]) -> str:
    """The output's data.yaml: paths relative to it, as Ultralytics reads them. No `path`
    key: Ultralytics resolves a relative `path` (even `.`) against the current folder, and
    without one takes the data.yaml's own folder as the dataset's root."""
    import yaml

    doc: dict[str, Any] = {}
    for split in splits:
        doc[SPLIT_FOLDERS[split]] = f"images/{SPLIT_FOLDERS[split]}"
    doc["names"] = dict(enumerate(names))
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def label_path(image_path: str) -> str:
    """images/<split>/<name>.<ext> -> labels/<split>/<name>.txt"""
    folder, _, name = image_path.partition("/")
    assert folder == "images", image_path
    return "labels/" + os.path.splitext(name)[0] + ".txt"
