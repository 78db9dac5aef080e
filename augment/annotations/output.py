"""The annotation files of an annotated output, in the input's format, and what an output's
manifest record says about its annotation.

An output's record carries its objects (`annotation.objects`: class, box in pixels, outline)
and the sha256 of its annotation content: the YOLO label file's bytes, or for COCO the
canonical JSON of that image's entries in the split's file. The files themselves are
written once at the end of a run from the records (reused outputs' too), each only when its
bytes change, so a rerun that changes nothing writes nothing:

- yolo: `labels/<split>/<stem>_nohash_<key>.txt` per image and `data.yaml` listing the splits;
  label files no record lists any more are removed;
- coco: `annotations/instances_<split>.json` per split;
- voc: `Annotations/<split>/<stem>_nohash_<key>.xml` and `ImageSets/Main/<split>.txt`;
- masks: the class-id PNGs (written by the workers beside their images) and, for a set
  converted to masks, `classes.txt`.

`kind` is the output's format: the input's, or the one `--annotations` asked for
(annotations/convert.py says what each conversion keeps).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from augment.annotations import coco, masks, voc, yolo
from augment.annotations.objects import SPLIT_FOLDERS, content_sha256
from augment.files import ChangedFile
from augment.model import Dataset, LabeledObject
from augment.recipe.annotated import BOX_RULES
from augment.stages.plan import NAME_SEPARATOR

if TYPE_CHECKING:
    import numpy as np


def annotation_record(
    kind: str,
    names: Sequence[str],
    image_path: str,
    objects: Sequence[LabeledObject],
    size: tuple[int, int],
    dropped: Mapping[str, int],
    mask_bytes: bytes | None = None,
) -> dict[str, Any]:
    """The `annotation` of an output's manifest record (`mask_bytes`: its encoded mask)."""
    listed = [object_entry(o) for o in objects]
    if kind == "yolo":
        file = yolo.label_path(image_path)
        sha = hashlib.sha256(yolo.label_text(objects, size, names).encode()).hexdigest()
    elif kind == "masks":
        file = masks.mask_path(image_path)
        sha = hashlib.sha256(mask_bytes or b"").hexdigest()
    elif kind == "voc":
        file = voc.xml_path(image_path)
        sha = hashlib.sha256(voc.xml_text(image_path, size, listed).encode()).hexdigest()
    else:
        split_folder = image_path.split("/")[1]
        file = coco.split_file(split_folder)
        sha = content_sha256([list(size), listed])
    return {
        "file": file,
        "sha256": sha,
        "size": list(size),
        "counts": dict(sorted(Counter(o.label for o in objects).items())),
        "dropped": dict(sorted(dropped.items())),
        "objects": listed,
    }


def object_entry(o: LabeledObject) -> dict[str, Any]:
    """An object as a manifest record lists it (the keys beyond the box only when set)."""
    entry: dict[str, Any] = {"label": o.label, "box": list(o.box)}
    if o.polygon:
        entry["polygon"] = list(o.polygon)
    if o.more_polygons:
        entry["more_polygons"] = [list(p) for p in o.more_polygons]
    if o.rle is not None:
        entry["rle"] = o.rle if isinstance(o.rle, str) else list(o.rle)
    if o.crowd:
        entry["crowd"] = True
    return entry


def object_of(entry: Mapping[str, Any]) -> LabeledObject:
    """A manifest record's object back as a LabeledObject."""
    x0, y0, x1, y1 = entry["box"]
    rle = entry.get("rle")
    return LabeledObject(
        entry["label"],
        (x0, y0, x1, y1),
        tuple(entry.get("polygon", ())),
        bool(entry.get("crowd")),
        tuple(tuple(p) for p in entry.get("more_polygons", ())),
        rle if rle is None or isinstance(rle, str) else tuple(rle),
    )


def output_mask(
    kind: str,
    names: Sequence[str],
    objects: Sequence[LabeledObject],
    size: tuple[int, int],
    warped: np.ndarray | None,
) -> bytes | None:
    """The encoded mask PNG an output comes with: a mask source's warped mask, or for a
    set converted to masks its objects' outlines drawn as class ids (shapes.class_mask)."""
    if warped is not None:
        return masks.encode_mask(warped)
    if kind != "masks":
        return None
    from augment.annotations.shapes import class_mask

    # Every source object has a shape (convert.py refuses box-only ones), and the mixes keep
    # it (an object whose shape a mix cuts away is dropped); one without a shape would be
    # left out rather than painted as its box.
    return masks.encode_mask(class_mask([o for o in objects if o.has_shape], size, names))


def write_annotation_files(
    out: Path,
    kind: str,
    names: Sequence[str],
    records: Iterable[Mapping[str, Any]],
    source_kind: str | None = None,
) -> Counter[str]:
    """The run's annotation files in format `kind` from its records (path order); returns
    the objects the transforms dropped, per class, over every output. `source_kind`: the
    input's format, when it is another (a masks output then names its ids in classes.txt)."""
    dropped: Counter[str] = Counter()
    per_split: dict[str, list[dict[str, Any]]] = {}
    labels: set[str] = set()
    for record in records:
        annotation = record.get("annotation")
        if not isinstance(annotation, dict):
            continue
        dropped.update(annotation.get("dropped", {}))
        folder = record["path"].split("/")[1]
        entry = {"path": record["path"], "size": annotation["size"],
                 "objects": annotation["objects"], "file": annotation["file"]}  # fmt: skip
        per_split.setdefault(folder, []).append(entry)
        if kind == "yolo":
            labels.add(annotation["file"])
            _write_changed(out / annotation["file"], _yolo_text(entry, names))
        elif kind == "voc":
            labels.add(annotation["file"])
            text = voc.xml_text(record["path"], entry["size"], entry["objects"])
            _write_changed(out / annotation["file"], text)
    folders = [f for f in SPLIT_FOLDERS.values() if f in per_split]
    if kind == "yolo":
        splits = [s for s, f in SPLIT_FOLDERS.items() if f in per_split]
        _write_changed(out / yolo.DATA_YAML, yolo.data_yaml(names, splits))
        _remove_unlisted(out, "labels", ".txt", labels)
    elif kind == "masks":  # written by the workers beside their images
        _remove_unlisted(out, "masks", ".png", {a for a in _files(per_split)})
        if source_kind not in (None, "masks"):
            lines = "".join(f"{n}\n" for n in [masks.BACKGROUND, *names])
            _write_changed(out / masks.CLASSES_FILE, lines)
    elif kind == "voc":
        _remove_unlisted(out, "Annotations", ".xml", labels)
        for folder in folders:
            stems = "".join(Path(e["path"]).stem + "\n" for e in per_split[folder])
            _write_changed(out / "ImageSets" / "Main" / f"{folder}.txt", stems)
    else:
        for folder in folders:
            doc = coco.split_document(names, per_split[folder], f"images/{folder}")
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
            _write_changed(out / coco.split_file(folder), text)
    return dropped


def _files(per_split: Mapping[str, Sequence[Mapping[str, Any]]]) -> Iterable[str]:
    return (entry["file"] for entries in per_split.values() for entry in entries)


def _yolo_text(entry: Mapping[str, Any], names: Sequence[str]) -> str:
    objects = [object_of(o) for o in entry["objects"]]
    return yolo.label_text(objects, (entry["size"][0], entry["size"][1]), names)


def _write_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    file = ChangedFile(path)
    try:
        file.write(text.encode())
    except BaseException:
        file.discard()
        raise
    file.commit()


def _remove_unlisted(out: Path, folder: str, suffix: str, listed: set[str]) -> None:
    """Label files of outputs no longer made (the image went stale), named as augment names
    them (`_nohash_<key>.txt`, `_nohash_<key>.xml`): a file the user put there is never touched."""
    labels = out / folder
    if not labels.is_dir():
        return
    for path in sorted(labels.rglob(f"*{suffix}")):
        rel = path.relative_to(out).as_posix()
        if rel not in listed and NAME_SEPARATOR in path.stem:
            path.unlink()
    for sub in sorted(labels.rglob("*"), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            os.rmdir(sub)


class Formats(Protocol):
    kind: str  # the format the run writes
    previous_kind: str | None  # the one the last run wrote into OUT


def write_annotations(
    out: Path, dataset: Dataset, lines: Iterable[str], formats: Formats | None = None
) -> tuple[Counter[str], dict[str, Any]]:
    """An annotated run's annotation files in its format (the input's, or another asked
    for), from its manifest lines (path order): the objects the transforms dropped, per
    class, and the header's `annotations`. The files of a format the last run wrote and
    this one does not are removed."""
    kind = formats.kind if formats is not None else dataset.kind
    if formats is not None and formats.previous_kind not in (None, kind):
        remove_format(out, formats.previous_kind)
    records = (json.loads(line) for line in lines)
    dropped = write_annotation_files(out, kind, dataset.names, records, dataset.kind)
    converted = {} if kind == dataset.kind else {"converted_from": dataset.kind}
    return dropped, {
        "format": kind,
        **converted,
        "names": dataset.names,
        **BOX_RULES,
        "dropped": dict(sorted(dropped.items())),  # objects, per class, all outputs
    }


def remove_format(out: Path, kind: str) -> None:
    """What a run writing `kind` wrote: its per-image files (named as augment names them)
    and the files that list the splits."""
    per_image = {"yolo": ("labels", ".txt"), "voc": ("Annotations", ".xml"),
                 "masks": ("masks", ".png")}  # fmt: skip
    if kind in per_image:
        _remove_unlisted(out, *per_image[kind], set())
    listing = {
        "yolo": [yolo.DATA_YAML],
        "coco": [coco.split_file(f) for f in SPLIT_FOLDERS.values()],
        "voc": [f"ImageSets/Main/{f}.txt" for f in SPLIT_FOLDERS.values()],
        "masks": [masks.CLASSES_FILE],
    }[kind]
    for rel in listing:
        (out / rel).unlink(missing_ok=True)
    for empty in ("annotations", "ImageSets/Main", "ImageSets"):
        if (out / empty).is_dir() and not any((out / empty).iterdir()):
            (out / empty).rmdir()
