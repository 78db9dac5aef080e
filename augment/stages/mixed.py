"""Mixed outputs of annotated sets, put together from images the worker augmented each on its
own: Mosaic (recipe/mosaic.py), CopyPaste (recipe/copy_paste.py), MixUp and CutMix.

- MixUp blends the pixels (recipe/mixing.py) and keeps both images' objects, all of them:
  each is still in the picture, at its image's weight, which the record's `sources` give.
  A class-id mask keeps the image's own class where it has one and the partner's elsewhere.
- CutMix pastes the partner's pixels inside the box. The image's own objects lose what the
  box covers and are re-boxed from what is left or dropped, by copy-paste's occlusion rule
  (an RLE mask cut by the box); the partner's objects are clipped to the box (every part of
  an outline, an RLE mask pixel for pixel) and dropped by the same BOX_RULES. A class-id
  mask is cut the same way.
- Every image's objects carry their every outline part and RLE mask into the mix.
- A segmentation set's objects are its classes' extents, recomputed on the mixed mask.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from augment.annotations.masks import objects_of
from augment.annotations.shapes import instance_masks
from augment.model import LabeledObject, Original
from augment.recipe.annotated import preprocess_objects
from augment.recipe.copy_paste import occlude, paste_instances
from augment.recipe.mixing import MIX_NAMES, WEIGHT_DECIMALS, cutmix, mixup
from augment.recipe.mosaic import assemble, clip_objects, fit_size, mosaic_lineage
from augment.recipe.preprocess import INTERPOLATIONS, Preprocess
from augment.stages.partners import PlannedMix


@dataclass
class Image:
    """One image of a mix, augmented (a copy-paste partner: preprocessed only)."""

    source: Original
    pixels: np.ndarray
    objects: list[LabeledObject]
    mask: np.ndarray | None
    params: list[dict[str, Any]]
    lost: Counter[str]  # objects its preprocessing and augmentation dropped, per class
    decoded_size: tuple[int, int] = (0, 0)  # a copy-paste partner: its objects' frame


@dataclass
class Made:
    pixels: np.ndarray
    objects: list[LabeledObject]
    lost: Counter[str]
    mask: np.ndarray | None
    params: list[dict[str, Any]]
    sources: list[dict[str, Any]]


def combine(
    mix: PlannedMix, images: Sequence[Image], spec: Preprocess, names: Sequence[str]
) -> Made:
    """The mixed output of `images` (the image itself first, then its partners)."""
    assert spec.size is not None, "a recipe with mix has a preprocess size"
    if mix.kind == "mosaic":
        made = _mosaic(mix, images, spec)
    elif mix.kind == "copypaste":
        made = _copy_paste(mix, images[0], images[1], spec, names)
    else:
        made = _mix_pair(mix, _fitted(images[0], spec.size), _fitted(images[1], spec.size))
    if made.mask is not None:  # a mask's objects are its classes' extents, once mixed
        made.objects = objects_of(made.mask, names or None)
        present = {o.label for o in made.objects}
        made.lost = Counter({label: 1 for label in made.lost if label not in present})
    return made


def _mosaic(mix: PlannedMix, images: Sequence[Image], spec: Preprocess) -> Made:
    assert mix.centre is not None and spec.size is not None
    tiles = [(i.pixels, i.objects, i.mask) for i in images]
    scales = mix.tile_scales
    pixels, kept, cut, mask = assemble(tiles, mix.centre, spec.size, spec.pad_color, scales)
    lost = sum((i.lost for i in images), Counter()) + cut
    params = [i.params for i in images]
    made_from = [i.source for i in images]
    sources, entry = mosaic_lineage(made_from, mix.weights, mix.centre, params, scales)
    return Made(pixels, kept, lost, mask, [*params[0], entry], sources)


def _copy_paste(
    mix: PlannedMix, own: Image, partner: Image, spec: Preprocess, names: Sequence[str]
) -> Made:
    assert spec.size is not None
    own = _fitted(own, spec.size)
    pieces = []
    for paste, (obj, mask) in zip(mix.pastes, _instances(mix, partner, spec, names), strict=True):
        if mask is not None and mask.any():  # an instance preprocessing kept
            pieces.append((paste, obj, mask))
    interpolation = INTERPOLATIONS[spec.interpolation]
    pasted = paste_instances(
        own.pixels, own.objects, own.mask, partner.pixels, pieces, interpolation, mix.blend, names
    )
    share = round(pasted.covered / (spec.size[0] * spec.size[1]), WEIGHT_DECIMALS)
    sources = [_source(own.source, round(1 - share, WEIGHT_DECIMALS)), _source(mix.partner, share)]
    entry = {"transform": "CopyPaste", "partner": mix.partner.path, "blend": mix.blend,
             "instances": pasted.placed}  # fmt: skip
    lost = own.lost + pasted.dropped
    return Made(pasted.pixels, pasted.objects, lost, pasted.ids, [*own.params, entry], sources)


def _instances(
    mix: PlannedMix, partner: Image, spec: Preprocess, names: Sequence[str]
) -> list[tuple[LabeledObject, np.ndarray | None]]:
    """Each drawn instance of the partner as its preprocessed image shows it, and its pixels
    (None: preprocessing cut it away)."""
    assert partner.source.annotation is not None
    size = (partner.pixels.shape[1], partner.pixels.shape[0])
    source_size = (partner.source.width, partner.source.height)
    out: list[tuple[LabeledObject, np.ndarray | None]] = []
    for paste in mix.pastes:
        listed = partner.source.annotation.objects[paste.index]
        if partner.mask is not None:  # a segmentation set: the class's pixels
            out.append((listed, instance_masks([listed], size, partner.mask, names)[0]))
            continue
        kept, _ = preprocess_objects([listed], source_size, partner.decoded_size, spec)
        if not kept:
            out.append((listed, None))
            continue
        out.append((kept[0], instance_masks(kept, size)[0]))
    return out


def _mix_pair(mix: PlannedMix, own: Image, partner: Image) -> Made:
    pixels, entry, sources = mix_pixels(mix, own.source, own.pixels, partner.pixels, partner.params)
    lost = own.lost + partner.lost
    mask = None
    if mix.kind == "mixup":
        objects = [*own.objects, *partner.objects]
        if own.mask is not None and partner.mask is not None:
            mask = np.where(own.mask > 0, own.mask, partner.mask)
    else:
        assert mix.box is not None
        x0, y0, x1, y1 = mix.box
        covered = np.zeros(own.pixels.shape[:2], bool)
        covered[y0:y1, x0:x1] = True
        objects, hidden = occlude(own.objects, covered)
        size = (own.pixels.shape[1], own.pixels.shape[0])
        inside, cut = clip_objects(partner.objects, size, (0, 0, *size), mix.box, size)
        objects += inside
        lost += hidden + cut
        if own.mask is not None and partner.mask is not None:
            mask = cutmix(own.mask, partner.mask, mix.box)
    return Made(pixels, objects, lost, mask, [*own.params, entry], sources)


def mix_pixels(
    mix: PlannedMix,
    original: Original,
    pixels: np.ndarray,
    partner: np.ndarray,
    partner_params: list[dict[str, Any]],
) -> tuple[np.ndarray, dict[str, Any], list[dict[str, Any]]]:
    """MixUp's or CutMix's pixels (of any set), its params entry and its two sources."""
    if mix.kind == "mixup":
        mixed = mixup(pixels, partner, mix.weight)
    else:
        assert mix.box is not None
        mixed = cutmix(pixels, partner, mix.box)
    entry: dict[str, Any] = {"transform": MIX_NAMES[mix.kind], "weight": mix.weight}
    if mix.box is not None:
        entry["box"] = list(mix.box)
    entry["partner"] = mix.partner.path
    entry["partner_params"] = partner_params
    sources = [_source(original, mix.weight), _source(mix.partner, 1 - mix.weight)]
    return mixed, entry, sources


def _source(original: Original, weight: float) -> dict[str, Any]:
    return {"path": original.path, "sha256": original.sha256, "weight": weight}


def _fitted(image: Image, size: tuple[int, int]) -> Image:
    """An image a transform resized (a crop in `augment`) scaled back to the output's size,
    its objects and mask with it."""
    height, width = image.pixels.shape[:2]
    if (width, height) == size:
        return image
    pixels = fit_size(image.pixels, size)
    mask = None if image.mask is None else fit_size(image.mask, size, cv2.INTER_NEAREST_EXACT)
    objects, _ = clip_objects(image.objects, (width, height), (0, 0, *size), (0, 0, *size), size)
    return Image(image.source, pixels, objects, mask, image.params, image.lost)
