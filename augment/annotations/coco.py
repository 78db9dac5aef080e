"""COCO instances JSON: `images`, `annotations` (`bbox` as x, y, w, h in pixels,
`segmentation` as polygons, every part of a multi-part one, or as RLE, compressed or not;
`iscrowd`) and `categories`. Image files are found relative to the JSON's
folder, an `images/` folder beside it, or (for `annotations/instances_*.json`) the folder
above. A JSON whose name says train, val or test keeps that split.

On output: one JSON per split, `annotations/instances_<split>.json`, with `file_name`
relative to `images/<split>/`, as `pycocotools.COCO` and torchvision's `CocoDetection` take.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augment.annotations.objects import Listed, RawObject, content_sha256
from augment.errors import DatasetError

_SPLIT_IN_NAME = re.compile(r"(?:^|[_\-.])(train|val|valid|validation|test)(?:\d*)(?:[_\-.]|$)")
_SPLITS = {"train": "train", "val": "validation", "valid": "validation",
           "validation": "validation", "test": "test"}  # fmt: skip


def is_coco(doc: object) -> bool:
    return isinstance(doc, dict) and "images" in doc and "annotations" in doc


def load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read COCO file {path}: {exc}") from exc
    if not is_coco(doc):
        raise DatasetError(f"{path} is not a COCO instances file (needs images, annotations)")
    if not isinstance(doc.get("categories"), list) or not doc["categories"]:
        raise DatasetError(f"COCO file {path} has no 'categories': the class names are missing")
    return doc


def category_names(doc: Mapping[str, Any], path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for cat in doc["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise DatasetError(f"COCO file {path}: a category needs an integer id and a name")
        names[cat["id"]] = str(cat["name"])
    return names


def list_images(root: Path, path: Path) -> Iterator[Listed]:
    """Every image the COCO file lists, with its annotations."""
    doc = load(path)
    names = category_names(doc, path)
    split = _split_of(path.name)
    per_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in doc["annotations"]:
        if isinstance(ann, dict):
            per_image[ann.get("image_id")].append(ann)
    file = path.relative_to(root).as_posix()
    for image in doc["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            continue
        rel = _resolve(root, path.parent, image["file_name"])
        anns = sorted(per_image.get(image.get("id"), []), key=lambda a: str(a.get("id")))
        yield _listed(rel, file, image, anns, names, split)


def _listed(
    rel: str,
    file: str,
    image: Mapping[str, Any],
    anns: Sequence[Mapping[str, Any]],
    names: Mapping[int, str],
    split: str | None,
) -> Listed:
    content = [
        [names.get(a.get("category_id", -1), str(a.get("category_id"))), a.get("bbox"),
         a.get("segmentation"), a.get("iscrowd", 0)]
        for a in anns
    ]  # fmt: skip
    size = (image.get("width"), image.get("height"))
    listed = Listed(
        rel,
        file,
        content_sha256([image["file_name"], size, content]),
        split=split,
        size=size if all(isinstance(v, int) for v in size) else None,  # type: ignore[arg-type]
    )
    if listed.size is None:  # no width and height: an RLE's size is what the image must be
        segs = [a.get("segmentation") for a in anns]
        shapes = [g["size"] for g in segs if isinstance(g, dict) and _is_shape(g.get("size"))]
        if shapes:
            size = listed.size = (shapes[0][1], shapes[0][0])
    for ann in anns:
        where = f"{file} annotation {ann.get('id')}"
        parsed = _object(ann, names, where, size)
        if isinstance(parsed, str):
            listed.problem = parsed
            break
        listed.objects.append(parsed)
    return listed


def _object(
    ann: Mapping[str, Any], names: Mapping[int, str], where: str, size: tuple[Any, Any]
) -> RawObject | str:
    label = names.get(ann.get("category_id"))  # type: ignore[arg-type]
    if label is None:
        return f"{where}: category_id {ann.get('category_id')!r} is not in the categories"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
        return f"{where}: bbox must be [x, y, width, height]"
    x, y, w, h = (float(v) for v in bbox)
    seg = ann.get("segmentation")
    polygons: list[tuple[float, ...]] = []
    rle: str | tuple[int, ...] | None = None
    if isinstance(seg, list):  # polygons: every part of a multi-part outline is kept
        polygons = [
            tuple(float(v) for v in part)
            for part in seg
            if isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0
            and all(_number(v) for v in part)
        ]  # fmt: skip
    elif isinstance(seg, dict):
        found = _rle(seg, size, where)
        if isinstance(found, Problem):
            return found.reason
        rle = found
    return RawObject(
        label,
        (x, y, x + w, y + h),
        polygons[0] if polygons else (),
        bool(ann.get("iscrowd")),
        more_polygons=tuple(polygons[1:]),
        rle=rle,
        where=where,
    )


@dataclass(frozen=True)
class Problem:
    reason: str


def _rle(
    seg: Mapping[str, Any], size: tuple[Any, Any], where: str
) -> str | tuple[int, ...] | Problem:
    """A run-length encoded mask as read: COCO's compressed counts string, or its
    uncompressed counts (a list, column-major runs starting with background), checked
    against the image's size. Decoded only where pixels are made (annotations/shapes.py)."""
    width, height = size
    shape, counts = seg.get("size"), seg.get("counts")
    if not _is_shape(shape):
        return Problem(f"{where}: an RLE segmentation needs size [height, width]")
    assert isinstance(shape, list)
    if isinstance(width, int) and isinstance(height, int) and shape != [height, width]:
        return Problem(
            f"{where}: the RLE mask is {shape[1]}x{shape[0]} pixels, the image {width}x{height}"
        )
    runs = rle_counts(counts) if isinstance(counts, str) else counts
    if isinstance(counts, str) and runs is None:
        return Problem(f"{where}: the RLE counts string is not COCO's compressed RLE")
    if not (isinstance(runs, list) and all(isinstance(v, int) and v >= 0 for v in runs)):
        return Problem(
            f"{where}: RLE counts must be a string (compressed) or a list of run lengths"
        )
    if sum(runs) != shape[0] * shape[1]:
        return Problem(f"{where}: the RLE counts do not add up to {shape[1]}x{shape[0]} pixels")
    return counts if isinstance(counts, str) else tuple(runs)


def _is_shape(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


def rle_counts(text: str) -> list[int] | None:
    """The run lengths of COCO's compressed RLE string (None: not one), read as pycocotools'
    rleFrString reads it: each count in 5-bit groups, the character minus 48, 0x20 marking a
    further group and 0x10 the sign of the last; from the fourth count on, a difference from
    the count two before. Here, without numpy, so that a bad mask is found when the source is
    read (pycocotools then decodes only checked ones)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(text) or not 48 <= ord(text[p]) < 48 + 64:
                return None
            c = ord(text[p]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts if text else None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _split_of(name: str) -> str | None:
    match = _SPLIT_IN_NAME.search(name.lower())
    return _SPLITS[match.group(1)] if match else None


def _resolve(root: Path, folder: Path, file_name: str) -> str:
    """The image's path relative to root: the first candidate folder that holds it."""
    bases = [folder, folder / "images"]
    if folder != root:
        bases += [folder.parent, folder.parent / "images"]
    for base in bases:
        if (base / file_name).is_file():
            return (base / file_name).relative_to(root).as_posix()
    return (folder / file_name).relative_to(root).as_posix()  # rejected as not found


def find_files(root: Path) -> list[Path]:
    """The COCO instances files of a source: *.json in it or in its annotations/ folder."""
    found = []
    for folder in (root, root / "annotations"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                head = path.read_text(encoding="utf-8")
                doc = json.loads(head)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and ("images" in doc or "annotations" in doc):
                found.append(path)
    return found


def split_file(split: str) -> str:
    return f"annotations/instances_{split}.json"


def split_document(
    names: Sequence[str], entries: Iterable[Mapping[str, Any]], image_folder: str
) -> dict[str, Any]:
    """One split's COCO document from the output records' annotations, in path order. An
    annotation's `area` is its shape's pixels where it has one (shapes.shape_area)."""
    from augment.annotations.shapes import shape_area  # pycocotools: not for ingest

    ids = {name: i for i, name in enumerate(names, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, entry in enumerate(entries, start=1):
        width, height = entry["size"]
        images.append(
            {"id": image_id, "file_name": entry["path"][len(image_folder) + 1 :],
             "width": width, "height": height}
        )  # fmt: skip
        for obj in entry["objects"]:
            x0, y0, x1, y1 = obj["box"]
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": ids[obj["label"]],
                "bbox": [x0, y0, round(x1 - x0, 3), round(y1 - y0, 3)],
                "area": shape_area(obj, width, height),
                "iscrowd": int(bool(obj.get("crowd"))),
                "segmentation": _segmentation(obj, width, height),
            }
            annotations.append(ann)
    categories = [{"id": i, "name": name, "supercategory": ""} for name, i in ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _segmentation(obj: Mapping[str, Any], width: int, height: int) -> Any:
    """An object's `segmentation`: its RLE (compressed counts), or every polygon of it."""
    if obj.get("rle") is not None:
        return {"size": [height, width], "counts": obj["rle"]}
    if obj.get("polygon"):
        return [obj["polygon"], *obj.get("more_polygons", ())]
    return []
