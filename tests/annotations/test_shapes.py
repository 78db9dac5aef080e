"""annotations/shapes.py: instance masks, outline clipping, and a COCO output's `area` as
pycocotools computes it (the command end to end: tests/test_mix_shapes.py)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from augment.annotations.coco import split_document
from augment.annotations.shapes import (
    clip_polygon,
    encode_rle,
    instance_masks,
    object_mask,
    polygons_mask,
)
from augment.model import LabeledObject
from tests.helpers import uncompressed_counts


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def _coco_of(objects: list[dict], width: int, height: int) -> COCO:
    entry = {"path": "images/train/a.png", "size": [width, height], "objects": objects}
    coco = COCO()
    coco.dataset = split_document(["a"], [entry], "images/train")
    coco.createIndex()
    return coco


def test_a_coco_output_s_area_is_its_shape_s_pixels_as_pycocotools_counts_them() -> None:
    """pycocotools' loadRes gives a segmentation maskUtils.area and a box w * h: the output's
    `area` is the same, for an outline (every part, their union), an RLE (compressed and
    uncompressed) and a box-only object."""
    width, height = 40, 30
    triangle = (2.0, 2.0, 20.5, 3.0, 9.0, 17.0)
    mask = np.zeros((height, width), bool)
    mask[5:25, 22:35] = True
    mask[8:10, 10:12] = True
    objects = [
        {"label": "a", "box": [2.0, 2.0, 20.5, 17.0], "polygon": list(triangle)},
        {
            "label": "a",
            "box": [0, 0, 20, 20],
            "polygon": list(_rect(0, 0, 10, 20)),
            "more_polygons": [list(_rect(5, 0, 20, 10))],
        },
        {"label": "a", "box": [10, 5, 35, 25], "rle": encode_rle(mask)},
        {"label": "a", "box": [10, 5, 35, 25], "rle": uncompressed_counts(mask)},
        {"label": "a", "box": [1.5, 2.0, 11.5, 6.5]},
    ]
    coco = _coco_of(objects, width, height)
    areas = [a["area"] for a in coco.loadAnns(coco.getAnnIds())]
    expected = [float(coco_mask.area(coco.annToRLE(a))) for a in coco.loadAnns([1, 2, 3, 4])]
    assert areas[:4] == expected
    assert expected[1] == 20 * 10 + 15 * 10 - 5 * 10  # the parts' union, not their sum
    assert expected[2] == expected[3] == mask.sum()
    assert areas[4] == 10.0 * 4.5


def test_an_outline_part_is_clipped_to_the_box_and_a_part_outside_it_is_gone() -> None:
    assert clip_polygon(_rect(4, 4, 30, 12), (0, 0, 20, 40)) == _rect(4, 4, 20, 12)
    assert clip_polygon(_rect(24, 4, 30, 12), (0, 0, 20, 40)) == ()
    # A triangle across the edge keeps the part inside it: its area, exactly.
    clipped = clip_polygon((0.0, 0.0, 20.0, 0.0, 0.0, 20.0), (0, 0, 10, 40))
    assert (
        polygons_mask([clipped], 40, 40).sum()
        == polygons_mask([(0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 20.0)], 40, 40).sum()
    )


def test_instance_masks_are_every_part_the_rle_or_none_for_a_box() -> None:
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    two = LabeledObject("a", (0, 0, 8, 4), _rect(0, 0, 3, 4), more_polygons=(_rect(5, 0, 8, 4),))
    rle = LabeledObject("a", (3, 2, 9, 5), rle=encode_rle(mask))
    box = LabeledObject("a", (0, 0, 4, 4))
    parts, pixels, none = instance_masks([two, rle, box], (12, 10))
    assert parts is not None and parts.sum() == 12 + 12 and not parts[:, 3:5].any()
    assert pixels is not None and (pixels == mask).all()
    assert none is None
    assert (object_mask(two, 12, 10) == parts).all()
