"""An object's shape as pixels: the one place an outline (every polygon of it) or a COCO
run-length encoded mask becomes the object's mask, and a mask becomes RLE again.

pycocotools' mask API does the work (polygons rasterised as COCO's own evaluation does,
RLE encoded and decoded), so a mask made here is the mask every COCO consumer sees for the
same annotation. Copy-paste and the masks output both take their instance masks from
`object_mask`. Imported only where pixels are made: ingest never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from augment.model import LabeledObject


def object_mask(obj: LabeledObject, width: int, height: int) -> np.ndarray:
    """The object's pixels (H x W bool) from its RLE or its outline's polygons; an object
    with only a box has its box filled."""
    if obj.rle is not None:
        return decode_rle(obj.rle, width, height)
    if obj.polygon:
        parts = [list(p) for p in obj.polygons if len(p) >= 6]
        if parts:
            rle = coco_mask.merge(coco_mask.frPyObjects(parts, height, width))
            return np.asarray(coco_mask.decode(rle), dtype=bool)
    x0, y0, x1, y1 = obj.box
    mask = np.zeros((height, width), dtype=bool)
    mask[round(y0) : round(y1), round(x0) : round(x1)] = True
    return mask


def decode_rle(rle: str | Sequence[int], width: int, height: int) -> np.ndarray:
    """A COCO RLE of a `height` x `width` image (compressed counts string, or the counts
    as a list: COCO's uncompressed form) as an H x W bool mask."""
    if isinstance(rle, str):
        compressed = {"size": [height, width], "counts": rle.encode("ascii")}
    else:
        compressed = coco_mask.frPyObjects(
            {"size": [height, width], "counts": list(rle)}, height, width
        )
    return np.asarray(coco_mask.decode(compressed), dtype=bool)


def encode_rle(mask: np.ndarray) -> str:
    """An H x W mask as COCO's compressed RLE counts string."""
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
