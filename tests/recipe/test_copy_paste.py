"""Copy-paste's pixels and objects (recipe/copy_paste.py), on arrays with objects in known
colours; end to end through the command: tests/test_copy_paste.py."""

from __future__ import annotations

import cv2
import numpy as np

from augment.annotations.shapes import instance_masks, polygons_mask
from augment.model import LabeledObject
from augment.recipe.copy_paste import paste_instances
from augment.recipe.mixing import Paste

RED, GREEN = (255, 0, 0), (0, 255, 0)


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def _partner() -> tuple[np.ndarray, LabeledObject, np.ndarray]:
    """A textured partner with a red L-shaped object (an outline of six vertices)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (60, 80, 3), dtype=np.uint8)
    outline = (10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 20.0, 20.0, 20.0, 40.0, 10.0, 40.0)
    mask = polygons_mask([outline], 80, 60)
    pixels[mask] = RED
    pixels[12, 12] = (255, 0, 1)  # one pixel unlike the rest: the flip must move it
    return pixels, LabeledObject("red", (10.0, 10.0, 30.0, 40.0), outline), mask


def test_a_rectangle_outline_is_exactly_its_pixels() -> None:
    mask = polygons_mask([_rect(3, 4, 9, 7)], 12, 10)
    expected = np.zeros((10, 12), bool)
    expected[4:7, 3:9] = True
    assert (mask == expected).all()


def test_pasted_pixels_are_the_instance_warped_exactly_and_its_box_is_tight() -> None:
    partner, obj, mask = _partner()
    target = np.full((60, 80, 3), 50, np.uint8)
    paste = Paste(index=0, scale=1.5, flip=True, x=0.5, y=0.25)
    result = paste_instances(target, [], None, partner, [(paste, obj, mask)], cv2.INTER_NEAREST)
    (placed,) = result.placed
    (pasted,) = result.objects
    px, py = placed["at"]
    nw, nh = placed["size"]
    assert (nw, nh) == (30, 45)
    # The instance's crop, flipped, scaled nearest-neighbour: what the pasted pixels must be.
    crop, shape = partner[10:40, 10:30][:, ::-1], mask[10:40, 10:30][:, ::-1].astype(np.uint8)
    crop = cv2.resize(np.ascontiguousarray(crop), (nw, nh), interpolation=cv2.INTER_NEAREST)
    shape = cv2.resize(np.ascontiguousarray(shape), (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    region = result.pixels[py : py + nh, px : px + nw]
    assert (region[shape.astype(bool)] == crop[shape.astype(bool)]).all()
    assert (region[~shape.astype(bool)] == 50).all()  # nothing around the instance comes
    ys, xs = np.nonzero(np.any(result.pixels != 50, axis=2))
    assert pasted.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert result.covered == int(shape.sum())
    # The flipped outline lies on the pasted pixels: rasterised, it is the pasted mask.
    drawn = polygons_mask([pasted.polygon], 80, 60)
    assert (drawn == np.any(result.pixels != 50, axis=2)).mean() > 0.99


def test_an_occluded_object_gets_the_box_of_its_visible_part_or_is_dropped() -> None:
    partner, _, mask = _partner()
    target = np.full((60, 80, 3), 50, np.uint8)
    target[0:30, 0:40] = GREEN
    behind = LabeledObject("green", (0.0, 0.0, 40.0, 30.0), _rect(0, 0, 40, 30))
    small = LabeledObject("green", (60.0, 40.0, 70.0, 50.0), _rect(60, 40, 70, 50))
    square = np.zeros_like(mask)
    square[10:40, 10:30] = True  # a 20 x 30 instance that covers the left half of `behind`
    full = LabeledObject("red", (10.0, 10.0, 30.0, 40.0), _rect(10, 10, 30, 40))
    pieces = [
        (Paste(0, 1.0, False, 0.0, 0.0), full, square),  # at (0, 0): covers x 0..20 of behind
        (Paste(0, 1.0, False, 1.0, 1.0), full, square),  # at (60, 30): covers all of `small`
    ]
    result = paste_instances(target, [behind, small], None, partner, pieces, cv2.INTER_NEAREST)
    labels = [o.label for o in result.objects]
    assert labels == ["green", "red", "red"] and result.dropped == {"green": 1}
    assert result.objects[0].box == (20.0, 0.0, 40.0, 30.0)  # what the paste left of it
    # The outline runs through the boundary pixels' centres: the inside is all in it.
    assert (polygons_mask([result.objects[0].polygon], 80, 60)[1:29, 21:39]).all()


def test_a_box_only_object_is_cut_to_what_is_left_of_its_box_or_dropped() -> None:
    partner, _, _ = _partner()
    square = np.zeros((60, 80), bool)
    square[0:20, 0:20] = True
    red = LabeledObject("red", (0.0, 0.0, 20.0, 20.0), _rect(0, 0, 20, 20))
    boxes = [LabeledObject("g", (0.0, 0.0, 40.0, 20.0)), LabeledObject("g", (0.0, 0.0, 22, 20))]
    target = np.zeros((60, 80, 3), np.uint8)
    pieces = [(Paste(0, 1.0, False, 0.0, 0.0), red, square)]
    result = paste_instances(target, boxes, None, partner, pieces, cv2.INTER_NEAREST)
    assert result.objects[0] == LabeledObject("g", (20.0, 0.0, 40.0, 20.0))  # half hidden
    assert result.dropped == {"g": 1}  # 2 of 22 columns left: under min_visibility


def test_segmentation_instances_are_a_class_s_pixels_and_the_mask_is_pasted() -> None:
    ids = np.zeros((20, 20), np.uint8)
    ids[2:6, 3:9] = 2
    (mask,) = instance_masks(
        [LabeledObject("b", (3.0, 2.0, 9.0, 6.0))], (20, 20), ids, ["", "a", "b"]
    )
    assert mask is not None and mask.sum() == 24
    partner = np.zeros((20, 20, 3), np.uint8)
    partner[mask] = GREEN
    obj = LabeledObject("b", (3.0, 2.0, 9.0, 6.0))
    target_ids = np.zeros((20, 20), np.uint8)
    result = paste_instances(
        np.zeros((20, 20, 3), np.uint8), [], target_ids, partner,
        [(Paste(0, 1.0, False, 1.0, 1.0), obj, mask)], cv2.INTER_NEAREST, names=["", "a", "b"],
    )  # fmt: skip
    assert result.ids is not None and (result.ids[16:20, 14:20] == 2).all()
    assert int((result.ids == 2).sum()) == 24


def test_blending_fades_the_edge_and_keeps_the_inside() -> None:
    partner, obj, mask = _partner()
    target = np.zeros((60, 80, 3), np.uint8)
    square = np.zeros_like(mask)
    square[10:40, 10:30] = True
    partner[square] = RED
    piece = (Paste(0, 1.0, False, 0.0, 0.0), obj, square)
    hard = paste_instances(target, [], None, partner, [piece], cv2.INTER_NEAREST)
    soft = paste_instances(target, [], None, partner, [piece], cv2.INTER_NEAREST, blend=2.0)
    assert (hard.pixels[0:30, 0:20] == RED).all()
    assert soft.pixels[15, 10, 0] == 255  # the middle: all the instance
    assert 0 < soft.pixels[15, 0, 0] < 255  # the edge: faded into the image
    assert (soft.pixels[:, 20:] == 0).all()  # nothing outside the instance's mask


def test_an_rle_object_behind_a_paste_loses_the_pasted_pixels_from_its_rle() -> None:
    """A target object given as RLE keeps the RLE of its visible pixels and their box; an RLE
    instance pasted carries its placed mask as its RLE; a two-part instance every part."""
    from augment.annotations.shapes import decode_rle, encode_rle, object_mask

    target = np.full((60, 80, 3), 50, np.uint8)
    behind_mask = np.zeros((60, 80), bool)
    behind_mask[0:30, 0:40] = True
    behind = LabeledObject("green", (0.0, 0.0, 40.0, 30.0), rle=encode_rle(behind_mask))
    partner = np.zeros((60, 80, 3), np.uint8)
    instance = np.zeros((60, 80), bool)
    instance[10:40, 10:30] = True
    partner[instance] = RED
    rle = LabeledObject("red", (10.0, 10.0, 30.0, 40.0), rle=encode_rle(instance))
    halves = (_rect(10, 10, 20, 40), _rect(20, 10, 30, 40))
    two = LabeledObject("red", (10.0, 10.0, 30.0, 40.0), halves[0], more_polygons=halves[1:])
    pieces = [(Paste(0, 1.0, False, 0.0, 0.0), rle, instance),
              (Paste(0, 1.0, True, 1.0, 1.0), two, instance)]  # fmt: skip
    result = paste_instances(target, [behind], None, partner, pieces, cv2.INTER_NEAREST)
    cut, pasted, parts = result.objects
    assert cut.rle is not None and cut.box == (20.0, 0.0, 40.0, 30.0)
    visible = behind_mask.copy()
    visible[0:30, 0:20] = False
    assert (decode_rle(cut.rle, 80, 60) == visible).all()
    assert pasted.rle is not None
    red = np.all(result.pixels == RED, axis=2)
    placed = np.zeros((60, 80), bool)
    placed[0:30, 0:20] = True
    assert (decode_rle(pasted.rle, 80, 60) == placed).all()
    assert len(parts.polygons) == 2 and parts.rle is None
    assert (object_mask(parts, 80, 60) == (red & ~placed)).all()
