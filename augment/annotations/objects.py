"""What every annotation format shares: objects as a reader found them (pixels or
normalised), checked against their image's size, and the per-image content digest.

A reader lists each image with its objects *before* the image is opened; `finish` checks them
once the image's size is known. A box outside the image, a zero-area box or an unknown class
is a reason to reject the image (the caller keeps it as a `Rejected`), never a crash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from augment.model import Annotation, LabeledObject

# A box may stand this far (in pixels) past the image's edge, as rounding in the tools that
# wrote it leaves it; it is clipped to the edge. Farther out is a mistake in the annotation.
EDGE_SLACK = 1.0
# OUT/images/<folder>/ per split: the folder names Ultralytics' own datasets use.
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}
# The label of an annotated image without objects: a valid negative (background) example.
NO_OBJECTS = "(no objects)"


class AnnotationProblem(Exception):
    """An image's annotation cannot be used; the message is the rejection's reason."""


@dataclass(frozen=True)
class RawObject:
    label: str
    box: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max
    polygon: tuple[float, ...] = ()
    crowd: bool = False
    more_polygons: tuple[tuple[float, ...], ...] = ()  # COCO: the other parts of an outline
    rle: str | tuple[int, ...] | None = None  # COCO: a run-length encoded mask
    normalised: bool = False  # YOLO: fractions of the image's width and height
    where: str = ""  # "labels/a.txt line 3": where a reason points to

    @property
    def polygons(self) -> tuple[tuple[float, ...], ...]:
        """Every part of the outline; `((),)` without one, so the first always exists."""
        return (self.polygon, *self.more_polygons) if self.polygon else ((),)


@dataclass
class Listed:
    """One image of an annotated source, as its reader found it."""

    image: str  # relative to the root, POSIX
    file: str  # the annotation file, relative to the root
    sha256: str  # of this image's annotation content alone
    objects: list[RawObject] = field(default_factory=list)
    split: str | None = None  # the split the layout gives (images/train ...), if any
    size: tuple[int, int] | None = None  # (width, height) the annotation states, if any
    problem: str | None = None  # found while reading: the image is rejected with it


def content_sha256(parts: object) -> str:
    """A canonical digest of one image's annotation content (for formats without one file
    per image: a COCO entry's annotations)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def finish(listed: Listed, width: int, height: int) -> Annotation:
    """The image's Annotation in pixels, or AnnotationProblem naming what is wrong."""
    if listed.problem is not None:
        raise AnnotationProblem(listed.problem)
    if listed.size is not None and listed.size != (width, height):
        raise AnnotationProblem(
            f"{listed.file}: the annotation says {listed.size[0]}x{listed.size[1]} pixels, "
            f"the image is {width}x{height}"
        )
    objects = tuple(_in_pixels(raw, width, height) for raw in listed.objects)
    return Annotation(listed.file, listed.sha256, objects, split=listed.split)


def _in_pixels(raw: RawObject, width: int, height: int) -> LabeledObject:
    if not all(math.isfinite(v) for v in (*raw.box, *(v for p in raw.polygons for v in p))):
        raise AnnotationProblem(f"{raw.where}: a coordinate is not a finite number (NaN, inf)")
    sx, sy = (width, height) if raw.normalised else (1, 1)
    x0, y0, x1, y1 = raw.box[0] * sx, raw.box[1] * sy, raw.box[2] * sx, raw.box[3] * sy
    if not (x1 > x0 and y1 > y0):
        raise AnnotationProblem(f"{raw.where}: zero-area box")
    if x0 < -EDGE_SLACK or y0 < -EDGE_SLACK or x1 > width + EDGE_SLACK or y1 > height + EDGE_SLACK:
        raise AnnotationProblem(
            f"{raw.where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the "
            f"{width}x{height} image"
        )
    box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    polygon, *more = (_polygon_in_pixels(p, sx, sy, width, height) for p in raw.polygons)
    return LabeledObject(raw.label, box, polygon, raw.crowd, tuple(more), raw.rle)


def _polygon_in_pixels(
    polygon: tuple[float, ...], sx: float, sy: float, width: int, height: int
) -> tuple[float, ...]:
    return tuple(
        min(max(v * (sx if i % 2 == 0 else sy), 0.0), float(width if i % 2 == 0 else height))
        for i, v in enumerate(polygon)
    )


def dominant_class(objects: Iterable[LabeledObject]) -> str:
    """The class most of an image's objects have (ties: the first name); its label in the
    summary's counts. An image without objects is labelled NO_OBJECTS."""
    counts = Counter(o.label for o in objects)
    if not counts:
        return NO_OBJECTS
    return min(counts, key=lambda label: (-counts[label], label))
