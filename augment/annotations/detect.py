"""Which annotated layout a source is, if any: YOLO (`data.yaml`, `images/` + `labels/`),
COCO (an instances JSON) or Pascal VOC (`Annotations/` + `JPEGImages/`). A layout that is
half there (images without labels, a data.yaml without images, a COCO file without
categories, Annotations/ without JPEGImages/) is an error naming what is missing, never a
silent fallback to class folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from augment.annotations import coco, masks, voc, yolo
from augment.annotations.objects import Listed
from augment.errors import DatasetError


@dataclass
class AnnotatedSource:
    kind: str  # "yolo" | "coco" | "voc" | "masks"
    names: list[str]
    listed: list[Listed] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # label files without an image


def _has_txt(folder: Path) -> bool:
    return folder.is_dir() and next(folder.rglob("*.txt"), None) is not None


def detect_layout(src: Path) -> str | None:
    """ "yolo", "coco", or None (not an annotated layout: class folders or a labels file)."""
    if not src.is_dir():
        return None
    images, labels = src / "images", src / "labels"
    if (src / yolo.DATA_YAML).is_file():
        if not images.is_dir():
            raise DatasetError(f"{src} has {yolo.DATA_YAML} but no images/ folder (YOLO layout)")
        return "yolo"
    if images.is_dir() and _has_txt(labels):
        return "yolo"  # read_names says data.yaml is missing
    if coco.find_files(src):
        return "coco"
    if masks.is_masks(src):
        if not images.is_dir():
            raise DatasetError(f"{src} has masks/ but no images/ folder (segmentation layout)")
        return "masks"
    if voc.is_voc(src):
        for needed in ("Annotations", "JPEGImages"):
            if not (src / needed).is_dir():
                raise DatasetError(f"{src} looks like Pascal VOC but has no {needed}/ folder")
        return "voc"
    return None


def read_annotated(src: Path, kind: str) -> AnnotatedSource:
    """Every image of the annotated source with its objects (still to be checked against
    the image's size: see objects.finish)."""
    root = src.resolve()
    if kind == "yolo":
        names = yolo.read_names(root)
        listed = list(yolo.list_images(root, names))
        if not listed:
            raise DatasetError(f"{src}: a YOLO layout with no images under images/")
        return AnnotatedSource(kind, names, listed, _labels_without_images(root, listed))
    if kind == "masks":
        full = masks.read_names(root)  # ids 0, 1, ...: classes.txt, or None (ids as names)
        listed = list(masks.list_images(root, full))
        if not listed:
            raise DatasetError(f"{src}: a segmentation layout with no images under images/")
        return AnnotatedSource(kind, full or [], listed)
    if kind == "voc":
        listed = list(voc.list_images(root))
        if not listed:
            raise DatasetError(f"{src}: a Pascal VOC layout with no images in JPEGImages/")
        return AnnotatedSource(kind, voc.names_of(listed), listed)
    files = coco.find_files(root)
    names_by_id: dict[int, str] = {}
    listed = []
    for path in files:
        doc = coco.load(path)
        for cat_id, name in coco.category_names(doc, path).items():
            if names_by_id.setdefault(cat_id, name) != name:
                raise DatasetError(
                    f"COCO files disagree: category {cat_id} is {names_by_id[cat_id]!r} in one "
                    f"and {name!r} in {path.name}"
                )
        listed.extend(coco.list_images(root, path))
    names = list(dict.fromkeys(names_by_id[i] for i in sorted(names_by_id)))
    return AnnotatedSource(kind, names, sorted(listed, key=lambda entry: entry.image))


def _labels_without_images(root: Path, listed: list[Listed]) -> list[str]:
    """Label files that no image has; most of them: a half-copied dataset (the images went
    missing), an error."""
    used = {entry.file for entry in listed}
    orphans = sorted(
        p.relative_to(root).as_posix()
        for p in (root / "labels").rglob("*.txt")
        if p.relative_to(root).as_posix() not in used
    )
    if orphans and len(orphans) * 2 > len(used):
        more = f" and {len(orphans) - 3} more" if len(orphans) > 3 else ""
        raise DatasetError(
            f"{root}: {len(orphans)} label files have no image under images/ "
            f"({', '.join(orphans[:3])}{more}): are the images missing?"
        )
    return orphans
