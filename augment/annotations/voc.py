"""Pascal VOC: `Annotations/<stem>.xml` (one per image: `<size>`, `<object>` with `<name>`
and a `<bndbox>` of 1-based, inclusive pixel indices) beside `JPEGImages/`. An image without
an XML is an image without objects; `ImageSets/Main/{train,val,test}.txt` keep the user's
split. The classes are the names the XML files use.

On output: `Annotations/<split>/<stem>_nohash_<key>.xml` beside `images/<split>/`, the XML's
`<folder>`/`<filename>` naming the image, and `ImageSets/Main/<split>.txt` listing the stems.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.annotations.objects import Listed, RawObject
from augment.defaults import IMAGE_EXTENSIONS

_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def is_voc(src: Path) -> bool:
    """Annotations/ with XML files, or a JPEGImages/ folder (a class of that name is not
    plausible in a classification set)."""
    annotations = src / "Annotations"
    has_xml = annotations.is_dir() and next(annotations.glob("*.xml"), None) is not None
    return has_xml or (src / "JPEGImages").is_dir()


def _given_splits(root: Path) -> dict[str, str]:
    given: dict[str, str] = {}
    for name, split in _SPLITS.items():
        path = root / "ImageSets" / "Main" / f"{name}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.split():
                    given.setdefault(line.split()[0], split)
    return given


def list_images(root: Path) -> Iterator[Listed]:
    given = _given_splits(root)
    for name in sorted(os.listdir(root / "JPEGImages")):
        if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        stem = os.path.splitext(name)[0]
        yield _listed(root, f"JPEGImages/{name}", f"Annotations/{stem}.xml", given.get(stem))


def _listed(root: Path, image: str, xml_rel: str, split: str | None) -> Listed:
    try:
        data = (root / xml_rel).read_bytes()
    except FileNotFoundError:
        return Listed(image, xml_rel, hashlib.sha256(b"").hexdigest(), split=split)
    except OSError as exc:
        return Listed(image, xml_rel, "", split=split, problem=f"cannot read {xml_rel}: {exc}")
    listed = Listed(image, xml_rel, hashlib.sha256(data).hexdigest(), split=split)
    import xml.etree.ElementTree as ET  # a VOC source's only: detection needs no XML

    try:
        doc = ET.fromstring(data)
    except ET.ParseError as exc:
        listed.problem = f"{xml_rel} is not valid XML: {exc}"
        return listed
    width, height = _int(doc.findtext("size/width")), _int(doc.findtext("size/height"))
    if width and height:
        listed.size = (width, height)
    for n, obj in enumerate(doc.iter("object"), start=1):
        where = f"{xml_rel} object {n}"
        name = (obj.findtext("name") or "").strip()
        box = [_float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        if not name or any(v is None for v in box):
            listed.problem = f"{where}: needs a <name> and a <bndbox> of xmin, ymin, xmax, ymax"
            return listed
        x0, y0, x1, y1 = (float(v) for v in box)  # type: ignore[arg-type]
        # 1-based inclusive indices: pixel 1 is [0, 1) in box coordinates.
        listed.objects.append(RawObject(name, (x0 - 1, y0 - 1, x1, y1), where=where))
    return listed


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def names_of(listed: Iterable[Listed]) -> list[str]:
    return sorted({o.label for entry in listed for o in entry.objects})


def xml_path(image_path: str) -> str:
    """images/<split>/<name>.<ext> -> Annotations/<split>/<name>.xml"""
    _, folder, name = image_path.split("/", 2)
    return f"Annotations/{folder}/{os.path.splitext(name)[0]}.xml"


def xml_text(image_path: str, size: Sequence[int], objects: Sequence[Mapping[str, Any]]) -> str:
    """An output's VOC XML, written the same way every time (no pretty-printer)."""
    from xml.sax.saxutils import escape  # VOC outputs' only

    _, folder, name = image_path.split("/", 2)
    lines = [
        "<annotation>",
        f"  <folder>{escape(folder)}</folder>",
        f"  <filename>{escape(name)}</filename>",
        f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>",
    ]
    for o in objects:
        x0, y0, x1, y1 = o["box"]
        lines += [
            "  <object>",
            f"    <name>{escape(o['label'])}</name>",
            # A COCO crowd region: VOC's evaluation ignores difficult objects, as COCO's does
            # crowd regions.
            f"    <difficult>{int(bool(o.get('crowd')))}</difficult>",
            f"    <bndbox><xmin>{x0 + 1:g}</xmin><ymin>{y0 + 1:g}</ymin>"
            f"<xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"
