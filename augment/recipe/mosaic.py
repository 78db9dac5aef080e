"""Mosaic (Bochkovskiy et al. 2020, YOLOv4): four train images in one, with their objects.

The geometry, as Ultralytics' mosaic does it at the output size (pure functions; the plan
draws, the worker applies):

- The output has the preprocess size W x H. A centre (cx, cy) is drawn uniformly with
  cx in [W/4, 3W/4] and cy in [H/4, 3H/4] (whole pixels).
- Each of the four images, already preprocessed and augmented on its own (W x H), is scaled
  to half size (W//2 x H//2, area interpolation; a mask nearest-neighbour; with the entry's
  tile `scale`, times the tile's drawn scale, rounded to whole pixels) and placed with a
  corner on the centre: the image the variant is made from top left (ending at the centre),
  then top right, bottom left, bottom right. What falls outside the output is cut; what no
  image covers is the preprocess `pad_color` (a mask's background, 0).
- An object is scaled and shifted with its image, then clipped to the part of the output its
  image covers, and dropped by the annotated path's box rules (less than `min_visibility` of
  its area left, or under `min_area` square pixels). Every part of an outline is clipped to
  that part of the output; an RLE mask is scaled and placed as the pixels are (nearest-
  neighbour, as a class-id mask) and cut alike.
- A source's weight is the fraction of the output's pixels its image covers; the uncovered
  border belongs to none, so the weights add up to 1 or a little less.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from augment.annotations.shapes import clip_polygon, decode_rle, encode_rle
from augment.model import LabeledObject, Original
from augment.recipe.annotated import BOX_RULES
from augment.recipe.mixing import tile_boxes, visible_part

TILES = 4


def fit_size(
    pixels: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_AREA
) -> np.ndarray:
    """Mixing works at the preprocess size; a transform that changed the size (a crop in
    `augment`) is scaled back so the images line up and the weights stay exact."""
    width, height = size
    if pixels.shape[:2] == (height, width):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


def place_tiles(
    tiles: Sequence[np.ndarray],
    centre: tuple[int, int],
    size: tuple[int, int],
    fill: int | tuple[int, ...],
    nearest: bool = False,
    scales: Sequence[float] = (),
) -> np.ndarray:
    """The four images (or masks, with `nearest`) at half size around the centre."""
    width, height = size
    first = tiles[0]
    out = np.empty((height, width, *first.shape[2:]), dtype=first.dtype)
    out[...] = fill
    interpolation = cv2.INTER_NEAREST_EXACT if nearest else cv2.INTER_AREA
    for tile, box in zip(tiles, tile_boxes(centre, size, scales), strict=True):
        _put(out, tile, box, size, interpolation)
    return out


def _put(
    out: np.ndarray,
    tile: np.ndarray,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    interpolation: int,
) -> None:
    """One image scaled into `box` (fitted to `size` first), what falls outside `out` cut."""
    x0, y0, x1, y1 = box
    tile = fit_size(tile, size, interpolation)
    scaled = cv2.resize(tile, (x1 - x0, y1 - y0), interpolation=interpolation)
    vx0, vy0, vx1, vy1 = visible_part(box, size)
    if vx1 > vx0 and vy1 > vy0:
        out[vy0:vy1, vx0:vx1] = scaled[vy0 - y0 : vy1 - y0, vx0 - x0 : vx1 - x0]


def place_mask(
    mask: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]
) -> np.ndarray:
    """An object's mask (H x W bool, on its image) where `place_tiles` puts that image's
    pixels, nearest-neighbour as a class-id mask goes: on a `size` canvas, False elsewhere."""
    out = np.zeros((size[1], size[0]), np.uint8)
    _put(out, mask.astype(np.uint8), box, size, cv2.INTER_NEAREST_EXACT)
    return out.astype(bool)


def place_objects(
    objects: Sequence[Sequence[LabeledObject]],
    tile_sizes: Sequence[tuple[int, int]],
    centre: tuple[int, int],
    size: tuple[int, int],
    scales: Sequence[float] = (),
) -> tuple[list[LabeledObject], Counter[str]]:
    """Each image's objects where `place_tiles` puts its pixels; those cut too much dropped.
    `tile_sizes` are the (width, height) of the images the objects are in."""
    kept: list[LabeledObject] = []
    dropped: Counter[str] = Counter()
    for tile_objects, frame, box in zip(
        objects, tile_sizes, tile_boxes(centre, size, scales), strict=True
    ):
        placed, cut = clip_objects(tile_objects, frame, box, visible_part(box, size), size)
        kept += placed
        dropped += cut
    return kept, dropped


def clip_objects(
    objects: Sequence[LabeledObject],
    frame: tuple[int, int],
    box: tuple[int, int, int, int],
    visible: tuple[float, float, float, float],
    size: tuple[int, int],
) -> tuple[list[LabeledObject], Counter[str]]:
    """Objects of a `frame` (width, height) image scaled into `box` (x0, y0, x1, y1) of a
    `size` output, then clipped to the `visible` box; those the clip leaves too little of
    dropped by BOX_RULES. Every part of an outline is clipped to `visible` (a part left
    with no area is gone); an RLE mask is placed pixel for pixel (place_mask) and cut to
    `visible`. An object whose outline or mask the clip empties is dropped too."""
    (x0, y0, x1, y1), (vx0, vy0, vx1, vy1) = box, visible
    sx, sy = (x1 - x0) / frame[0], (y1 - y0) / frame[1]
    kept: list[LabeledObject] = []
    dropped: Counter[str] = Counter()
    for o in objects:
        bx0, by0 = o.box[0] * sx + x0, o.box[1] * sy + y0
        bx1, by1 = o.box[2] * sx + x0, o.box[3] * sy + y0
        cx0, cy0 = min(max(bx0, vx0), vx1), min(max(by0, vy0), vy1)
        cx1, cy1 = min(max(bx1, vx0), vx1), min(max(by1, vy0), vy1)
        area, left = (bx1 - bx0) * (by1 - by0), (cx1 - cx0) * (cy1 - cy0)
        if left < BOX_RULES["min_area"] or left < BOX_RULES["min_visibility"] * area:
            dropped[o.label] += 1
            continue
        moved = (
            tuple(v * sx + x0 if i % 2 == 0 else v * sy + y0 for i, v in enumerate(part))
            for part in o.polygons
        )
        clipped = [c for c in (clip_polygon(p, visible) for p in moved) if c]
        parts = [tuple(round(v, 2) for v in c) for c in clipped]
        rle = None
        if o.rle is not None:
            placed_mask = place_mask(decode_rle(o.rle, *frame), box, size)
            placed_mask[:, : math.ceil(vx0)] = placed_mask[:, math.ceil(vx1) :] = False
            placed_mask[: math.ceil(vy0)] = placed_mask[math.ceil(vy1) :] = False
            rle = encode_rle(placed_mask) if placed_mask.any() else None
        if (o.polygon and not parts) or (o.rle is not None and rle is None):
            dropped[o.label] += 1  # its box is in view, none of its pixels are
            continue
        first, *more = parts or [()]
        placed = (round(cx0, 2), round(cy0, 2), round(cx1, 2), round(cy1, 2))
        kept.append(LabeledObject(o.label, placed, first, o.crowd, tuple(more), rle))
    return kept, dropped


Tile = tuple[np.ndarray, Sequence[LabeledObject], "np.ndarray | None"]  # pixels, objects, mask


def assemble(
    tiles: Sequence[Tile],
    centre: tuple[int, int],
    size: tuple[int, int],
    fill: tuple[int, int, int],
    scales: Sequence[float] = (),
) -> tuple[np.ndarray, list[LabeledObject], Counter[str], np.ndarray | None]:
    """The mosaic of four augmented images: pixels, the objects kept, those the edges cut
    (per class), and the class-id mask when the images have one."""
    pixels = place_tiles([t[0] for t in tiles], centre, size, fill, scales=scales)
    masks = [t[2] for t in tiles]
    mask = None
    if all(m is not None for m in masks):
        ids = [m for m in masks if m is not None]
        mask = place_tiles(ids, centre, size, 0, nearest=True, scales=scales)
    sizes = [(t[0].shape[1], t[0].shape[0]) for t in tiles]
    kept, dropped = place_objects([t[1] for t in tiles], sizes, centre, size, scales)
    return pixels, kept, dropped, mask


def mosaic_lineage(
    made: Sequence[Original],
    weights: Sequence[float],
    centre: tuple[int, int],
    params: Sequence[list[dict[str, Any]]],
    scales: Sequence[float] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The record's `sources` (all four, with their area weights) and the params entry that
    says how the mosaic was made (the other three images' own augmentations included)."""
    sources = [
        {"path": o.path, "sha256": o.sha256, "weight": w}
        for o, w in zip(made, weights, strict=True)
    ]
    tiles = [{"path": o.path, "params": p} for o, p in zip(made[1:], params[1:], strict=True)]
    entry: dict[str, Any] = {"transform": "Mosaic", "centre": list(centre), "tiles": tiles}
    if scales:  # only when the entry has a tile scale: the records made before stay the same
        entry["scales"] = list(scales)
    return sources, entry
