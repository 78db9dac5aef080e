"""`augment audit OUT --source SRC` on an annotated output: every held-out output's objects
compared, object by object, with its original's annotation in SRC as the recipe's preprocess
moves it (the very function `expand` uses), naming the object that differs.

Validation and test must be the originals as they are labelled, only resized: a held-out
record whose objects differ (moved, dropped, relabelled, an outline changed) says the split
was not made from this source's labels, or was edited since. A mask set's held-out masks are
compared pixel for pixel with the source's mask preprocessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augment.annotations.detect import detect_layout, read_annotated
from augment.annotations.masks import decode_mask
from augment.annotations.objects import AnnotationProblem, Listed, finish
from augment.annotations.output import object_entry
from augment.commands.audit_annotations import compare_objects
from augment.commands.audit_report import Finding
from augment.errors import DatasetError
from augment.imaging.codec import UnreadableImage, decode
from augment.imaging.digests import sha256_bytes
from augment.recipe.annotated import preprocess_mask, preprocess_objects
from augment.recipe.preprocess import Preprocess

CHECK = "annotations"
ORIGINAL = "the preprocessed original"


@dataclass(frozen=True)
class _Source:
    """The source the audit compares with, as `expand` read it, and the run's preprocess."""

    root: Path
    listed: Mapping[str, Listed]  # image path -> its annotation as read
    masks: bool  # a mask set: masks are compared, not objects
    preprocess: Preprocess
    background: tuple[int, int, int]


def held_out_object_findings(
    out: Path, records: Sequence[Mapping[str, Any]], header: Mapping[str, Any], src: Path
) -> list[Finding]:
    """Held-out outputs against their originals in `src` (DatasetError: not the layout)."""
    kind = detect_layout(src)
    if kind is None:
        raise DatasetError(f"--source {src} is not an annotated dataset (YOLO, COCO, VOC, masks)")
    spec = header.get("recipe", {}).get("spec", {}).get("preprocess", {})
    red, green, blue = spec.get("background", (255, 255, 255))
    source = _Source(
        src,
        {entry.image: entry for entry in read_annotated(src, kind).listed},
        kind == "masks",
        Preprocess.from_dict({k: v for k, v in spec.items() if k != "background"}),
        (int(red), int(green), int(blue)),
    )
    findings: list[Finding] = []
    for r in records:
        if r["split"] == "train" or len(r.get("sources", ())) != 1:
            continue
        path = r["path"]
        for message in _differences(out, source, r):
            findings.append(Finding(CHECK, "held-out-objects", f"{path}: {message}", (path,)))
    return findings


def _differences(out: Path, source: _Source, record: Mapping[str, Any]) -> Iterator[str]:
    original = record["sources"][0]
    name = original["path"]
    entry = source.listed.get(name)
    if entry is None:
        yield f"its original {name} is not in the source"
        return
    try:
        data = (source.root / name).read_bytes()
    except OSError as exc:
        yield f"its original {name} cannot be read: {exc.strerror or exc}"
        return
    if sha256_bytes(data) != original["sha256"]:
        yield f"its original {name} changed since the run (another sha256)"
        return
    preprocess = source.preprocess
    try:
        decoded = decode(data, source.background, needed=preprocess.needed_source_size).pixels
        width, height = _source_size(data)
        annotation = finish(entry, width, height)
    except (UnreadableImage, AnnotationProblem) as exc:
        yield f"its original {name} cannot be used: {exc}"
        return
    decoded_size = (decoded.shape[1], decoded.shape[0])
    if source.masks:  # a mask set: the masks themselves
        yield from _mask_differences(out, source, record, entry.file, decoded_size)
        return
    expected, _ = preprocess_objects(annotation.objects, (width, height), decoded_size, preprocess)
    found = record["annotation"]["objects"]
    yield from compare_objects([object_entry(o) for o in expected], found, ORIGINAL)


def _source_size(data: bytes) -> tuple[int, int]:
    from augment.imaging.codec import open_image

    with open_image(data) as image:
        return image.size


def _mask_differences(
    out: Path,
    source: _Source,
    record: Mapping[str, Any],
    mask_file: str,
    decoded_size: tuple[int, int],
) -> Iterator[str]:
    try:
        ids = decode_mask((source.root / mask_file).read_bytes())
    except (OSError, ValueError) as exc:
        yield f"its original's mask {mask_file} cannot be read: {exc}"
        return
    expected = preprocess_mask(ids, decoded_size, source.preprocess)
    try:
        found = decode_mask((out / record["annotation"]["file"]).read_bytes())
    except (OSError, ValueError):
        return  # the annotations check reports a missing or unreadable mask
    if found.shape != expected.shape:
        yield f"its mask is {found.shape[1]}x{found.shape[0]}, the preprocessed original's " \
            f"{expected.shape[1]}x{expected.shape[0]}"  # fmt: skip
    elif (differ := int(np.count_nonzero(found != expected))) > 0:
        where = sorted(set(np.unique(found[found != expected]).tolist()))
        yield f"its mask differs from the preprocessed original's at {differ} pixels (ids {where})"
