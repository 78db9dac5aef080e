"""The annotation files of an annotated output, in the input's format, and what an output's
manifest record says about its annotation.

An output's record carries its objects (`annotation.objects`: class, box in pixels, outline)
and the sha256 of its annotation content: the YOLO label file's bytes, or for COCO the
canonical JSON of that image's entries in the split's file. The files themselves are
written once at the end of a run from the records (reused outputs' too), each only when its
bytes change, so a rerun that changes nothing writes nothing:

- yolo: `labels/<split>/<stem>_nohash_<key>.txt` per image and `data.yaml` listing the splits;
  label files no record lists any more are removed;
- coco: `annotations/instances_<split>.json` per split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.annotations import coco, masks, voc, yolo
from augment.annotations.objects import SPLIT_FOLDERS, content_sha256
from augment.files import ChangedFile
from augment.model import Dataset, LabeledObject
from augment.recipe.annotated import BOX_RULES
from augment.stages.plan import NAME_SEPARATOR


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
    listed = [_object_entry(o) for o in objects]
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


def _object_entry(o: LabeledObject) -> dict[str, Any]:
    entry: dict[str, Any] = {"label": o.label, "box": list(o.box)}
    if o.polygon:
        entry["polygon"] = list(o.polygon)
    if o.crowd:
        entry["crowd"] = True
    return entry


def write_annotation_files(
    out: Path, kind: str, names: Sequence[str], records: Iterable[Mapping[str, Any]]
) -> Counter[str]:
    """The run's annotation files from its records (path order); returns the objects the
    transforms dropped, per class, over every output."""
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
    objects = [
        LabeledObject(o["label"], tuple(o["box"]), tuple(o.get("polygon", ())))
        for o in entry["objects"]
        if not o.get("crowd")  # Ultralytics has no crowd regions: they are left out
    ]
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


def write_annotations(
    out: Path, dataset: Dataset, lines: Iterable[str]
) -> tuple[Counter[str], dict[str, Any]]:
    """An annotated run's annotation files, from its manifest lines (path order): the
    objects the transforms dropped, per class, and the header's `annotations`."""
    records = (json.loads(line) for line in lines)
    dropped = write_annotation_files(out, dataset.kind, dataset.names, records)
    return dropped, {
        "format": dataset.kind,
        "names": dataset.names,
        **BOX_RULES,
        "dropped": dict(sorted(dropped.items())),  # objects, per class, all outputs
    }
