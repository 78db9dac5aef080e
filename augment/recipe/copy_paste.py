"""Copy-paste (Ghiasi et al. 2021, "Simple Copy-Paste"): instances cut from a second train
image and pasted onto the image a variant is made from. Pure functions; the plan draws which
instances and their jitter, the worker supplies the pixels.

- An instance is an object with a shape: an outline (every part of it, rasterised as
  pycocotools does: for vertices on pixel edges, the pixels whose centre lies inside), a COCO
  RLE mask, or in a segmentation set a class's pixels on the class-id mask.
  `annotations.shapes.instance_masks` is the one place objects become pixel masks.
- Each pasted instance is its tight crop, flipped left-right if drawn, scaled by the drawn
  factor (pixels with the recipe's preprocess interpolation, its mask nearest-neighbour;
  the factor is capped so the instance fits the output) and placed where it fits whole, at
  the drawn fraction of the room the output leaves. Pastes go in order: a later one covers
  an earlier one.
- Edge blending is off by default: every pixel inside a pasted instance's mask is the
  source's pixel, exactly. With `blend` (a sigma in pixels) the alpha is the mask blurred by
  that Gaussian and kept inside the mask, so the instance's edge fades into the image and
  nothing around the instance comes with it.
- Occlusion: an object the pastes cover loses those pixels, and is dropped by the annotated
  path's BOX_RULES (less than `min_visibility` of its pixels left, or under `min_area`
  square pixels). Otherwise an object with an outline or mask gets the box of its visible
  pixels and, for an outline, an outline part per visible piece, the largest first (traced
  a quarter pixel inside the pixels' edges, so that it rasterises to exactly those pixels);
  an RLE mask becomes the RLE of its visible pixels.
  A box-only object's visibility is counted on its box's pixels, and its box becomes the box
  of the box's pixels left visible (the object is inside its box, so what is visible of it
  is inside that).
- A pasted object's box is the tight box of its placed mask; its outline is every part of
  its outline moved by the same flip, scale and shift; an RLE instance's mask is its placed
  mask, pixel for pixel.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from augment.annotations.shapes import class_id, encode_rle, instance_masks
from augment.model import LabeledObject
from augment.recipe.annotated import BOX_RULES
from augment.recipe.mixing import Paste


@dataclass
class Pasted:
    """What pasting made: pixels, the objects kept, those the pastes covered (per class),
    the class-id mask (segmentation sets), and how each instance was placed."""

    pixels: np.ndarray
    objects: list[LabeledObject]
    dropped: Counter[str]
    ids: np.ndarray | None
    covered: int  # pixels the pastes took: the partner's share of the output
    placed: list[dict[str, Any]] = field(default_factory=list)


def paste_instances(
    target: np.ndarray,
    objects: Sequence[LabeledObject],
    ids: np.ndarray | None,
    partner: np.ndarray,
    pieces: Sequence[tuple[Paste, LabeledObject, np.ndarray]],
    interpolation: int = cv2.INTER_LINEAR,
    blend: float = 0.0,
    names: Sequence[str] = (),
) -> Pasted:
    """The target with each piece (a draw, the partner's object, its mask on the partner)
    pasted in order; the target's objects updated or dropped (see the module's doc)."""
    height, width = target.shape[:2]
    out = target.copy()
    out_ids = None if ids is None else ids.copy()
    masks = instance_masks(objects, (width, height), ids, names)
    layers = [_Layer(o, m, (width, height)) for o, m in zip(objects, masks, strict=True)]
    placed: list[dict[str, Any]] = []
    taken = np.zeros((height, width), bool)
    for paste, source, mask in pieces:
        warped = _warp(paste, partner, source, mask, (width, height), interpolation)
        if warped is None:
            continue
        (px, py), pixels, shape, moved = warped
        nh, nw = shape.shape
        full = np.zeros((height, width), bool)
        full[py : py + nh, px : px + nw] = shape
        _composite(out, (px, py), pixels, shape, blend)
        if out_ids is not None:
            out_ids[full] = class_id(source.label, names)
        for layer in layers:
            layer.cover(full)
        first, *more = moved or [()]
        rle = encode_rle(full) if source.rle is not None else None
        pasted = LabeledObject(source.label, _tight(full), first, source.crowd, tuple(more), rle)
        layers.append(_Layer(pasted, full, (width, height)))
        taken |= full
        scale = round(nw / mask_width(mask), 4)
        placed.append({"label": source.label, "index": paste.index, "scale": scale,
                       "flip": paste.flip, "at": [px, py], "size": [nw, nh]})  # fmt: skip
    kept, dropped = _left(layers)
    return Pasted(out, kept, dropped, out_ids, int(taken.sum()), placed)


def occlude(
    objects: Sequence[LabeledObject],
    covered: np.ndarray,
    ids: np.ndarray | None = None,
    names: Sequence[str] = (),
) -> tuple[list[LabeledObject], Counter[str]]:
    """The objects with the `covered` pixels (a bool mask) hidden: re-boxed or dropped, by
    the module's occlusion rule (CutMix's region is such a cover)."""
    size = (covered.shape[1], covered.shape[0])
    masks = instance_masks(objects, size, ids, names)
    layers = [_Layer(o, m, size) for o, m in zip(objects, masks, strict=True)]
    for layer in layers:
        layer.cover(covered)
    return _left(layers)


def _left(layers: Sequence[_Layer]) -> tuple[list[LabeledObject], Counter[str]]:
    kept: list[LabeledObject] = []
    dropped: Counter[str] = Counter()
    for layer in layers:
        result = layer.result()
        if result is None:
            dropped[layer.object.label] += 1
        else:
            kept.append(result)
    return kept, dropped


def mask_width(mask: np.ndarray) -> int:
    xs = np.nonzero(mask.any(axis=0))[0]
    return int(xs.max() - xs.min() + 1) if len(xs) else 1


class _Layer:
    """An object on the output and the pixels of it the pastes after it leave visible."""

    def __init__(self, obj: LabeledObject, mask: np.ndarray | None, size: tuple[int, int]):
        self.object = obj
        if mask is None:  # a box-only object: the box's pixels stand for it
            x0, y0, x1, y1 = obj.box
            mask = np.zeros((size[1], size[0]), bool)
            mask[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)] = True
        self.visible = mask.copy()
        self.area = int(mask.sum())

    def cover(self, pasted: np.ndarray) -> None:
        self.visible &= ~pasted

    def result(self) -> LabeledObject | None:
        """The object as the pastes left it, or None when they hid too much of it."""
        left = int(self.visible.sum())
        if left == self.area:
            return self.object
        if left < BOX_RULES["min_area"] or left < BOX_RULES["min_visibility"] * self.area:
            return None
        o = self.object
        first, *more = _outlines(self.visible) if o.polygon else [()]
        rle = encode_rle(self.visible) if o.rle is not None else None
        return LabeledObject(o.label, _tight(self.visible), first, o.crowd, tuple(more), rle)


def _warp(
    paste: Paste,
    partner: np.ndarray,
    source: LabeledObject,
    mask: np.ndarray,
    size: tuple[int, int],
    interpolation: int,
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, list[tuple[float, ...]]] | None:
    """The instance's crop flipped, scaled and placed: (x, y), pixels, mask, outline parts."""
    width, height = size
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    cw, ch = x1 - x0, y1 - y0
    scale = min(paste.scale, width / cw, height / ch)
    nw, nh = max(1, min(width, round(cw * scale))), max(1, min(height, round(ch * scale)))
    pixels, shape = partner[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.uint8)
    if paste.flip:
        pixels, shape = pixels[:, ::-1], shape[:, ::-1]
    pixels = cv2.resize(np.ascontiguousarray(pixels), (nw, nh), interpolation=interpolation)
    shape = cv2.resize(
        np.ascontiguousarray(shape), (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT
    ).astype(bool)
    if not shape.any():
        return None  # scaled down to nothing
    px = min(int(paste.x * (width - nw + 1)), width - nw)
    py = min(int(paste.y * (height - nh + 1)), height - nh)
    moved: list[tuple[float, ...]] = []
    for part in source.polygons:
        values: list[float] = []
        for vx, vy in zip(part[0::2], part[1::2], strict=True):
            u = (vx - x0) * nw / cw
            u = nw - u if paste.flip else u
            v = (vy - y0) * nh / ch
            values += [round(px + min(max(u, 0.0), nw), 2), round(py + min(max(v, 0.0), nh), 2)]
        moved.append(tuple(values))
    return (px, py), pixels, shape, moved


def _composite(
    out: np.ndarray, at: tuple[int, int], pixels: np.ndarray, shape: np.ndarray, blend: float
) -> None:
    px, py = at
    nh, nw = shape.shape
    region = out[py : py + nh, px : px + nw]
    if blend <= 0:
        region[shape] = pixels[shape]
        return
    # Zeros beyond the crop: the blur fades the edge rather than reflecting the instance.
    alpha = (
        cv2.GaussianBlur(shape.astype(np.float32), (0, 0), blend, borderType=cv2.BORDER_CONSTANT)
        * shape
    )
    alpha = alpha[..., None]
    mixed = alpha * pixels.astype(np.float32) + (1.0 - alpha) * region.astype(np.float32)
    region[...] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _tight(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _outlines(visible: np.ndarray) -> list[tuple[float, ...]]:
    """An outline part per visible piece, the largest first. Traced on the mask at twice the
    size, so each vertex is a quarter pixel inside the pixels' edges: even a piece one pixel
    wide has an outline whose rasterisation (shapes.polygons_mask) is its pixels."""
    doubled = cv2.resize(
        visible.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST
    )
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pieces = sorted(contours, key=lambda c: (-cv2.contourArea(c), -len(c)))
    return [tuple(round(float(v), 2) for v in (c.reshape(-1) + 0.5) / 2) for c in pieces]
