"""Semantic segmentation masks: `images/` + `masks/` (a PNG of class ids per image, same
relative path and stem, 0 = background), with an optional `classes.txt` (one name a line,
the first for id 0, the background). Without one, a class is named by its id.

Each class present on a mask becomes an object whose box is the bounding box of its pixels:
what the holdout stratifies on and the manifest counts. On output: `masks/<split>/
<stem>_nohash_<key>.png` beside `images/<split>/` (written by the worker with its image; class ids,
warped with nearest-neighbour, borders background) and `classes.txt`.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from augment.annotations.objects import Listed, RawObject
from augment.defaults import IMAGE_EXTENSIONS
from augment.errors import DatasetError
from augment.model import LabeledObject

if TYPE_CHECKING:
    import numpy as np

CLASSES_FILE = "classes.txt"
BACKGROUND = "background"  # id 0's name in the classes.txt of a set converted to masks


def is_masks(src: Path) -> bool:
    return (src / "masks").is_dir() and not (src / "labels").is_dir()


def read_names(root: Path) -> list[str] | None:
    """The class names for ids 0, 1, ... from classes.txt, or None without one."""
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) < 2:
        raise DatasetError(f"{path} needs a name per class id, the background (id 0) first")
    return names


def decode_mask(data: bytes) -> np.ndarray:
    """A mask's class ids, H x W uint8; ValueError when it is not a single-channel image."""
    # Imported here: ingest reads this module on every run, and a rerun proven unchanged
    # must not load an image library (see augment/defaults.py).
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("L", "P"):
            raise ValueError(f"a mask must be a single-channel PNG of class ids, not {image.mode}")
        return np.asarray(image).copy()


def list_images(root: Path, names: Sequence[str] | None) -> Iterator[Listed]:
    images = root / "images"
    for dirpath, dirnames, filenames in os.walk(images):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(images)
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            stem = (rel_dir / os.path.splitext(name)[0]).as_posix()
            yield _listed(root, f"images/{(rel_dir / name).as_posix()}", f"masks/{stem}.png", names)


def _listed(root: Path, image: str, mask: str, names: Sequence[str] | None) -> Listed:
    try:
        data = (root / mask).read_bytes()
    except OSError as exc:
        return Listed(image, mask, "", problem=f"no mask {mask}: {exc.strerror or exc}")
    listed = Listed(image, mask, hashlib.sha256(data).hexdigest())
    try:
        ids = decode_mask(data)
    except (OSError, ValueError) as exc:
        listed.problem = f"{mask}: {exc}"
        return listed
    listed.size = (ids.shape[1], ids.shape[0])
    for obj in objects_of(ids, names):
        if obj.label.startswith("?"):
            listed.problem = f"{mask}: class id {obj.label[1:]} is not in {CLASSES_FILE}"
            return listed
        listed.objects.append(RawObject(obj.label, obj.box, where=mask))
    return listed


def objects_of(ids: np.ndarray, names: Sequence[str] | None) -> list[LabeledObject]:
    """A LabeledObject per class on the mask (background aside): its pixels' bounding box.
    An id classes.txt does not name is labelled '?<id>'."""
    import numpy as np

    objects = []
    for class_id in np.unique(ids).tolist():
        if class_id == 0:
            continue
        ys, xs = np.nonzero(ids == class_id)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        label = class_name(class_id, names)
        objects.append(LabeledObject(label, box))
    return objects


def class_name(class_id: int, names: Sequence[str] | None) -> str:
    if names is None:
        return str(class_id)
    return names[class_id] if class_id < len(names) else f"?{class_id}"


def encode_mask(ids: np.ndarray) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_path(image_path: str) -> str:
    """images/<split>/<name>.<ext> -> masks/<split>/<name>.png"""
    _, folder, name = image_path.split("/", 2)
    return f"masks/{folder}/{os.path.splitext(name)[0]}.png"
