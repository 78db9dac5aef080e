"""`augment audit` on an annotated output (YOLO, COCO, VOC, masks): where its images are,
and the `annotations` check. Every record's objects are inside its image, non-degenerate and
of a known class; its size is the image file's; its annotation file exists and holds what the
record says (a label file's, XML's or mask's sha256; the COCO split file's objects, compared
object by object); held-out outputs are variant 0, untransformed. `--source SRC` compares
them with the source's labels too (audit_held_out.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from augment.annotations.objects import SPLIT_FOLDERS
from augment.commands.audit_report import Finding
from augment.imaging.digests import sha256_file

CHECK = "annotations"
MANIFEST = "the manifest"
# Boxes and vertices are recorded to a hundredth of a pixel: closer than this is the same.
TOLERANCE = 0.011


def is_annotated(header: Mapping[str, Any]) -> bool:
    return isinstance(header.get("annotations"), dict)


def split_folder(split: str) -> str:
    """Where an annotated output's images of `split` are, relative to OUT."""
    return f"images/{SPLIT_FOLDERS.get(split, split)}"


def object_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """split -> class -> objects: the balance an annotated output is audited on."""
    counts: dict[str, Counter[str]] = {}
    for r in records:
        annotation = r.get("annotation") or {}
        counts.setdefault(r["split"], Counter()).update(annotation.get("counts", {}))
    return {s: dict(sorted(c.items())) for s, c in counts.items()}


def annotation_findings(
    out: Path, records: Sequence[Mapping[str, Any]], header: Mapping[str, Any]
) -> list[Finding]:
    names = set(header["annotations"].get("names", []))
    kind = header["annotations"].get("format")
    findings: list[Finding] = []
    coco_files: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        path = r["path"]

        def add(what: str, message: str, path: str = path) -> None:
            findings.append(Finding(CHECK, what, f"{path}: {message}", (path,)))

        annotation = r.get("annotation")
        if not isinstance(annotation, dict):
            add("no-annotation", "the record has no annotation")
            continue
        width, height = annotation["size"]
        for problem in object_problems(annotation["objects"], width, height, names):
            add("bad-object", problem)
        try:
            with Image.open(out / path) as image:
                if image.size != (width, height):
                    add("size", f"the image is {image.size[0]}x{image.size[1]}, the record says "
                        f"{width}x{height}")  # fmt: skip
        except OSError:
            continue  # integrity reports a missing or unreadable image
        if kind in ("yolo", "voc", "masks"):  # a file per image
            label = out / annotation["file"]
            if not label.is_file():
                add("missing-label-file", f"{annotation['file']} is missing")
            elif sha256_file(label) != annotation["sha256"]:
                add("label-file-changed", f"{annotation['file']} differs from the manifest's")
        elif kind == "coco":
            listed = coco_files.setdefault(annotation["file"], _coco_objects(out, annotation))
            name = path.rsplit("/", 1)[-1]
            if name not in listed:
                add("coco-mismatch", f"{annotation['file']} does not list the image")
            for problem in compare_objects(annotation["objects"], listed.get(name, []), MANIFEST):
                add("coco-mismatch", f"{annotation['file']}: {problem}")
    findings += held_out_findings(records)
    return findings


def object_problems(
    objects: Sequence[Mapping[str, Any]], width: int, height: int, names: set[str]
) -> list[str]:
    problems = []
    for n, o in enumerate(objects, start=1):
        x0, y0, x1, y1 = o["box"]
        if o["label"] not in names:
            problems.append(f"object {n}: class {o['label']!r} is not in the header's names")
        if not (x1 > x0 and y1 > y0):
            problems.append(f"object {n}: degenerate box {o['box']}")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            problems.append(f"object {n}: box {o['box']} outside the {width}x{height} image")
    return problems


def _coco_objects(out: Path, annotation: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """file_name -> objects, as the split's COCO file lists them, in the manifest's terms
    ({} if unreadable)."""
    try:
        doc = json.loads((out / annotation["file"]).read_text(encoding="utf-8"))
        names = {c["id"]: c["name"] for c in doc["categories"]}
        by_id = {image["id"]: image["file_name"] for image in doc["images"]}
        objects: dict[str, list[dict[str, Any]]] = {name: [] for name in by_id.values()}
        for a in doc["annotations"]:
            objects[by_id[a["image_id"]]].append(_coco_object(a, names))
        return objects
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _coco_object(ann: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    x, y, w, h = ann["bbox"]
    entry: dict[str, Any] = {"label": names[ann["category_id"]], "box": [x, y, x + w, y + h]}
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        entry["rle"] = seg.get("counts")
    elif seg:
        entry["polygon"] = seg[0]
        if len(seg) > 1:
            entry["more_polygons"] = seg[1:]
    if ann.get("iscrowd"):
        entry["crowd"] = True
    return entry


def compare_objects(
    expected: Sequence[Mapping[str, Any]], found: Sequence[Mapping[str, Any]], against: str
) -> Iterator[str]:
    """What differs between two object lists (as manifest records list them), object by
    object in order: the first difference of each object, named by its number and class;
    `against` names where the expected ones come from."""
    if len(found) != len(expected):
        yield (
            f"{len(found)} objects, {against} has {len(expected)} "
            f"({_classes(found)} against {_classes(expected)})"
        )
        return
    for n, (want, got) in enumerate(zip(expected, found, strict=True), start=1):
        what = f"object {n} ({got['label']})"
        if want["label"] != got["label"]:
            yield f"object {n} is {got['label']!r}, in {against} {want['label']!r}"
        elif not _close(want["box"], got["box"]):
            yield f"{what}: box {got['box']}, in {against} {want['box']}"
        elif not _same_shape(want, got):
            yield f"{what}: its outline or mask differs from the one in {against}"
        elif bool(want.get("crowd")) != bool(got.get("crowd")):
            yield f"{what}: crowd is {bool(got.get('crowd'))}, in {against} {not got.get('crowd')}"


def _classes(objects: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(sorted(o["label"] for o in objects)) or "none"


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= TOLERANCE for x, y in zip(a, b, strict=True))


def _same_shape(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    polygons = [want.get("polygon", []), *want.get("more_polygons", [])]
    theirs = [got.get("polygon", []), *got.get("more_polygons", [])]
    if len(polygons) != len(theirs) or want.get("rle") != got.get("rle"):
        return False
    return all(_close(p, q) for p, q in zip(polygons, theirs, strict=True))


def held_out_findings(records: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """A held-out output's objects must be its original's as preprocessed: the same as the
    train copy of an original held in train (variant 0) would carry; nothing dropped beyond
    what the preprocess's crop dropped, no transform applied."""
    findings = []
    for r in records:
        if r["split"] != "train" and (r.get("variant") != 0 or r.get("params")):
            findings.append(
                Finding(
                    CHECK,
                    "held-out-augmented",
                    f"{r['path']}: a held-out output that is not the preprocessed original",
                    (r["path"],),
                )
            )
    return findings
