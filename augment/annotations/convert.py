"""`--annotations yolo|coco|voc|masks`: the output's annotation format when it is not the
input's, and the conversions refused because they would invent or lose what a user relies on.

What each conversion keeps (docs/annotations.md, "Converting", has the table):

- boxes go everywhere but masks; an outline (every polygon, or a COCO RLE) becomes a
  masks output's class ids, so a masks output needs an outline on every object;
- VOC keeps boxes only (it has no outlines); a COCO crowd region is `difficult`;
- YOLO has one polygon per object (the largest part of a multi-part outline) and no crowd
  regions (left out, as Ultralytics' own COCO converter does);
- a semantic mask has one region per class, not objects: it converts to nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from augment.errors import DatasetError
from augment.imaging.digests import sha256_of
from augment.model import Dataset

if TYPE_CHECKING:
    from augment.stages.plan import Fingerprints

FORMATS = ("yolo", "coco", "voc", "masks")
_NAMES = {"yolo": "YOLO", "coco": "COCO", "voc": "Pascal VOC", "masks": "masks"}
_MASK_IDS = 255  # a masks output is an 8-bit PNG of class ids, 0 the background


def output_kind(dataset: Dataset, asked: str | None) -> str:
    """The annotation format the run writes: `asked` (checked), or the input's."""
    if dataset.task == "classification":
        if asked is not None:
            raise DatasetError(
                f"--annotations {asked} is for annotated datasets (YOLO, COCO, VOC, masks); "
                f"{dataset.root} is a classification set ({dataset.layout})"
            )
        return dataset.kind
    if asked is None or asked == dataset.kind:
        return dataset.kind
    if asked not in FORMATS:
        raise DatasetError(f"--annotations must be one of {', '.join(FORMATS)}, not {asked!r}")
    check_conversion(dataset, asked)
    return asked


def check_conversion(dataset: Dataset, target: str) -> None:
    """Refuse a conversion that would invent or lose objects (DatasetError, exit 2)."""
    source = _NAMES.get(dataset.kind, dataset.kind)
    if dataset.kind == "masks":
        raise DatasetError(
            f"--annotations {target}: a {source} source has one region per class, not objects "
            "(a box around all of a class's pixels would merge every instance); it can only "
            "be written as masks"
        )
    if target != "masks":
        return
    if len(dataset.names) > _MASK_IDS:
        raise DatasetError(
            f"--annotations masks: {len(dataset.names)} classes do not fit an 8-bit mask "
            f"of class ids (at most {_MASK_IDS} besides the background)"
        )
    boxes_only = [
        o.path
        for o in dataset.originals
        if o.annotation is not None and any(not obj.has_shape for obj in o.annotation.objects)
    ]
    if boxes_only:
        raise DatasetError(
            f"--annotations masks: {len(boxes_only)} images of the {source} source have objects "
            f"with only a box (first: {boxes_only[0]}); a mask would paint the whole box as the "
            "object. Masks need an outline (polygon or RLE) on every object"
        )


def previous_format(header: Mapping[str, Any]) -> str | None:
    """The annotation format an earlier run wrote into OUT (its header's), if any."""
    annotations = header.get("annotations")
    found = annotations.get("format") if isinstance(annotations, dict) else None
    return found if found in FORMATS else None


def converted_fingerprints(fingerprints: Fingerprints, source: str, target: str) -> Fingerprints:
    """The fingerprints that name a run's outputs, with a converted format in them: an
    output's name stands for its image and the annotation file it comes with, so writing
    another format is another name (and the input's own format keeps the names it had)."""
    if target == source:
        return fingerprints
    from augment.stages.plan import Fingerprints  # plan loads numpy: only for a conversion

    return Fingerprints(
        sha256_of(fingerprints.preprocess, "annotations", target),
        sha256_of(fingerprints.recipe, "annotations", target),
    )
