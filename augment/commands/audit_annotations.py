"""`augment audit` on an annotated output (detection: YOLO, COCO): where its images are, and
the `annotations` check. Every record's objects are inside its image, non-degenerate and of a
known class; its size is the image file's; its annotation file exists and holds what the
record says (the YOLO label file's sha256; the COCO split file lists the image with as many
objects); the held-out originals' objects are the preprocessed originals' (variant 0)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from augment.annotations.objects import SPLIT_FOLDERS
from augment.commands.audit_report import Finding
from augment.imaging.digests import sha256_file

CHECK = "annotations"


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
    coco_files: dict[str, dict[str, int]] = {}
    for r in records:
        path = r["path"]

        def add(what: str, message: str, path: str = path) -> None:
            findings.append(Finding(CHECK, what, f"{path}: {message}", (path,)))

        annotation = r.get("annotation")
        if not isinstance(annotation, dict):
            add("no-annotation", "the record has no annotation")
            continue
        width, height = annotation["size"]
        for problem in _object_problems(annotation["objects"], width, height, names):
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
            listed = coco_files.setdefault(annotation["file"], _coco_counts(out, annotation))
            name = path.rsplit("/", 1)[-1]
            if listed.get(name) != len(annotation["objects"]):
                add("coco-mismatch", f"{annotation['file']} does not list its "
                    f"{len(annotation['objects'])} objects")  # fmt: skip
    findings += _held_out_findings(records)
    return findings


def _object_problems(
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


def _coco_counts(out: Path, annotation: Mapping[str, Any]) -> dict[str, int]:
    """file_name -> objects, as the split's COCO file lists them ({} if unreadable)."""
    try:
        doc = json.loads((out / annotation["file"]).read_text(encoding="utf-8"))
        by_id = {image["id"]: image["file_name"] for image in doc["images"]}
        counts = Counter(by_id[a["image_id"]] for a in doc["annotations"])
        return {name: counts.get(name, 0) for name in by_id.values()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _held_out_findings(records: Sequence[Mapping[str, Any]]) -> list[Finding]:
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
