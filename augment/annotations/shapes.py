"""An object's shape as pixels: the one place an outline (every polygon of it) or a COCO
run-length encoded mask becomes the object's mask, and a mask becomes RLE again.

pycocotools' mask API does the work (polygons rasterised as COCO's own evaluation does,
RLE encoded and decoded), so a mask made here is the mask every COCO consumer sees for the
same annotation. Copy-paste, CutMix, Mosaic and the masks output all take their instance
masks from `instance_masks` / `object_mask`; a COCO output's `area` is `shape_area`.
pycocotools is imported at the first call: a run without shapes never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augment.model import LabeledObject


def object_mask(obj: LabeledObject, width: int, height: int) -> np.ndarray:
    """The object's pixels (H x W bool) from its RLE or its outline's polygons; an object
    with only a box has its box filled."""
    if obj.rle is not None:
        return decode_rle(obj.rle, width, height)
    if any(len(p) >= 6 for p in obj.polygons):
        return polygons_mask(obj.polygons, width, height)
    x0, y0, x1, y1 = obj.box
    mask = np.zeros((height, width), dtype=bool)
    mask[round(y0) : round(y1), round(x0) : round(x1)] = True
    return mask


def polygons_mask(polygons: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """The union of the polygons' pixels (H x W bool), rasterised as pycocotools' annToMask
    does (a rectangle with its vertices on pixel edges is exactly its pixels)."""
    from pycocotools import mask as coco_mask  # annotated runs only

    parts = [list(p) for p in polygons if len(p) >= 6]
    if not parts:
        return np.zeros((height, width), dtype=bool)
    rle = coco_mask.merge(coco_mask.frPyObjects(parts, height, width))
    return np.asarray(coco_mask.decode(rle), dtype=bool)


def class_id(label: str, names: Sequence[str]) -> int:
    """A segmentation set's class id for `label` (masks.class_name's inverse)."""
    if label in names:
        return list(names).index(label)
    return int(label.lstrip("?"))


def instance_masks(
    objects: Sequence[LabeledObject],
    size: tuple[int, int],
    ids: np.ndarray | None = None,
    names: Sequence[str] = (),
) -> list[np.ndarray | None]:
    """Each object's pixels on a `size` (width, height) image: its RLE's or its outline's
    (every part), or in a segmentation set its class's pixels on the class-id mask `ids`;
    None for a box-only object (whose pixels are not known)."""
    width, height = size
    masks: list[np.ndarray | None] = []
    for o in objects:
        if ids is not None:
            masks.append(ids == class_id(o.label, names))
        elif o.has_shape:
            masks.append(object_mask(o, width, height))
        else:
            masks.append(None)
    return masks


def clip_polygon(
    polygon: Sequence[float], visible: tuple[float, float, float, float]
) -> tuple[float, ...]:
    """The part of a polygon (x, y pairs) inside the box (x0, y0, x1, y1), by
    Sutherland-Hodgman clipping against its four sides: () when nothing is left."""
    points = list(zip(polygon[0::2], polygon[1::2], strict=True))
    vx0, vy0, vx1, vy1 = visible
    sides = ((0, vx0, 1), (0, vx1, -1), (1, vy0, 1), (1, vy1, -1))  # axis, limit, inside sign
    for axis, limit, sign in sides:
        if not points:
            break
        clipped: list[tuple[float, float]] = []
        for i, current in enumerate(points):
            previous = points[i - 1]
            inside_now = (current[axis] - limit) * sign >= 0
            inside_before = (previous[axis] - limit) * sign >= 0
            if inside_now != inside_before:
                t = (limit - previous[axis]) / (current[axis] - previous[axis])
                crossing = [previous[0] + t * (current[0] - previous[0]),
                            previous[1] + t * (current[1] - previous[1])]  # fmt: skip
                crossing[axis] = limit
                clipped.append((crossing[0], crossing[1]))
            if inside_now:
                clipped.append(current)
        points = clipped
    kept = [p for i, p in enumerate(points) if p != points[i - 1]] if len(points) > 1 else points
    if len(kept) < 3 or _shoelace(kept) == 0:
        return ()
    return tuple(v for p in kept for v in p)


def _shoelace(points: Sequence[tuple[float, float]]) -> float:
    pairs = zip(points, [*points[1:], points[0]], strict=True)
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs)) / 2


def shape_area(entry: Mapping[str, Any], width: int, height: int) -> float:
    """A COCO output annotation's `area`, as pycocotools computes it for a result
    (COCO.loadRes: maskUtils.area of the segmentation, the bbox's w * h without one): the
    pixels of the object's RLE or of its outline's polygons (their union), rasterised; the
    box's area for a box-only object."""
    from pycocotools import mask as coco_mask  # annotated runs only

    rle = entry.get("rle")
    if isinstance(rle, str):
        compressed = {"size": [height, width], "counts": rle.encode("ascii")}
        return float(coco_mask.area(compressed))
    if rle is not None:  # uncompressed counts: background runs first, then object runs
        return float(sum(list(rle)[1::2]))
    parts = [list(p) for p in [entry.get("polygon", ()), *entry.get("more_polygons", ())]]
    parts = [p for p in parts if len(p) >= 6]
    if parts:
        return float(coco_mask.area(coco_mask.merge(coco_mask.frPyObjects(parts, height, width))))
    x0, y0, x1, y1 = entry["box"]
    return round((x1 - x0) * (y1 - y0), 3)


def decode_rle(rle: str | Sequence[int], width: int, height: int) -> np.ndarray:
    """A COCO RLE of a `height` x `width` image (compressed counts string, or the counts
    as a list: COCO's uncompressed form) as an H x W bool mask."""
    from pycocotools import mask as coco_mask  # annotated runs only

    if isinstance(rle, str):
        compressed = {"size": [height, width], "counts": rle.encode("ascii")}
    else:
        compressed = coco_mask.frPyObjects(
            {"size": [height, width], "counts": list(rle)}, height, width
        )
    return np.asarray(coco_mask.decode(compressed), dtype=bool)


def encode_rle(mask: np.ndarray) -> str:
    """An H x W mask as COCO's compressed RLE counts string."""
    from pycocotools import mask as coco_mask  # annotated runs only

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def class_mask(
    objects: Sequence[LabeledObject], size: tuple[int, int], names: Sequence[str]
) -> np.ndarray:
    """A semantic mask (H x W uint8 class ids) of instance objects: class `names[i]` is id
    i + 1, 0 the background; where objects overlap, the later object's class is drawn."""
    width, height = size
    ids = {name: i for i, name in enumerate(names, start=1)}
    mask = np.zeros((height, width), dtype=np.uint8)
    for obj in objects:
        mask[object_mask(obj, width, height)] = ids[obj.label]
    return mask
