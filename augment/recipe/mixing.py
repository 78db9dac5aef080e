"""Mixing two training images: MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019).

A mixed image is partly one original and partly another, so its label is soft: "for a picture
on which 50% of pixels are from the dog and the rest from the cat, the answer is half dog,
half cat". Everything here is a pure function; the plan draws the weights and boxes, the worker
applies them to pixels.

- MixUp: `lambda ~ Beta(alpha, alpha)`; output = lambda * image + (1 - lambda) * partner,
  rounded to the nearest integer. The weights are lambda and 1 - lambda.
- CutMix: `lambda ~ Beta(alpha, alpha)` gives a box of at most (1 - lambda) of the area, with
  the image's aspect ratio, placed uniformly where it fits whole; the partner's pixels are
  pasted into it. The weights are the exact pixel area fractions the box leaves and takes.

The draw is folded to max(lambda, 1 - lambda), as fastai's MixUp does: the image a variant is
made from always keeps at least half, so the variant's dominant class is its own class, it
stays in its own class's folder, and the class counts the plan promises (`--balance`) hold.
Which image is "the image" and which "the partner" is itself random, so nothing is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

MixKind = Literal["mixup", "cutmix", "mosaic", "copypaste"]
# Mosaic (four images) and CopyPaste (instances of a second image), annotated sets only:
# recipe/mosaic.py and recipe/copy_paste.py.
MIX_KINDS: dict[str, MixKind] = {
    "MixUp": "mixup",
    "CutMix": "cutmix",
    "Mosaic": "mosaic",
    "CopyPaste": "copypaste",
}
MIX_NAMES: dict[MixKind, str] = {v: k for k, v in MIX_KINDS.items()}

# MixUp weights are rounded to this many decimals before they are used, so the manifest's
# weight is exactly the one the pixels were blended with (and weights sum to 1).
WEIGHT_DECIMALS = 4

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels
MOSAIC_CENTRE = (0.25, 0.75)  # the middle half of the output, as Ultralytics draws it


@dataclass(frozen=True)
class MixSpec:
    """One `mix:` entry of a recipe."""

    kind: MixKind
    p: float  # fraction of train variants mixed this way
    alpha: float  # Beta(alpha, alpha) parameter
    other_class: bool = False  # partner only from another class
    only_classes: tuple[str, ...] | None = None
    except_classes: tuple[str, ...] = ()
    # Mosaic: the range (fractions of the output's width and height) its centre is drawn in,
    # and the range each tile's scale is drawn in ((1, 1): half the output, as always).
    centre: tuple[float, float] = MOSAIC_CENTRE
    tile_scale: tuple[float, float] = (1.0, 1.0)
    # CopyPaste: which classes' instances are pasted (None: all), at most how many per
    # output, each instance's scale range and flip probability, and the edge feathering
    # (the Gaussian's sigma in pixels; 0, the default, pastes hard edges).
    classes: tuple[str, ...] | None = None
    max_per_output: int = 3
    scale: tuple[float, float] = (0.75, 1.25)
    flip: float = 0.5
    blend: float = 0.0

    def allows(self, label: str) -> bool:
        if self.only_classes is not None and label not in self.only_classes:
            return False
        return label not in self.except_classes

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "p": self.p,
            "alpha": self.alpha,
            "other_class": self.other_class,
            "only_classes": list(self.only_classes) if self.only_classes is not None else None,
            "except_classes": list(self.except_classes),
            **self._own_options(),
        }

    def _own_options(self) -> dict[str, object]:
        # Only what a kind has, and Mosaic's centre only when set: the recipes written before
        # these options keep their fingerprints, so their outputs keep their names.
        if self.kind == "mosaic":
            out: dict[str, object] = {}
            if self.centre != MOSAIC_CENTRE:
                out["centre"] = list(self.centre)
            if self.tile_scale != (1.0, 1.0):
                out["scale"] = list(self.tile_scale)
            return out
        if self.kind == "copypaste":
            return {
                "classes": list(self.classes) if self.classes is not None else None,
                "max_per_output": self.max_per_output,
                "scale": list(self.scale),
                "flip": self.flip,
                "blend": self.blend,
            }
        return {}


@dataclass(frozen=True)
class Paste:
    """One instance copy-paste pastes, as the plan drew it (recipe/copy_paste.py)."""

    index: int  # which of the partner's objects (in its annotation's order)
    scale: float
    flip: bool
    x: float  # where: fractions in [0, 1) of the room the output leaves beside it
    y: float


def choose_mix(specs: Sequence[MixSpec], u: float) -> int | None:
    """Which entry fires for a uniform draw u in [0, 1): entries own consecutive bands of
    width p, so `p` is exactly the share of variants mixed that way (and at most one fires)."""
    edge = 0.0
    for index, spec in enumerate(specs):
        edge += spec.p
        if u < edge:
            return index
    return None


def mixup_weight(rng: np.random.Generator, alpha: float) -> float:
    """The image's own weight lambda (at least 0.5), rounded so the blend and the record
    agree exactly."""
    return round(_folded_beta(rng, alpha), WEIGHT_DECIMALS)


def cutmix_box(rng: np.random.Generator, alpha: float, width: int, height: int) -> Box:
    """A box of at most (1 - lambda) of the image's area, placed where it fits whole (so the
    area is not cut down by the border, and lambda stays what was drawn, up to rounding
    down to whole pixels: the partner never takes more than half)."""
    side = math.sqrt(1.0 - _folded_beta(rng, alpha))
    box_w = math.floor(width * side)
    box_h = math.floor(height * side)
    x0 = int(rng.integers(0, width - box_w + 1))
    y0 = int(rng.integers(0, height - box_h + 1))
    return (x0, y0, x0 + box_w, y0 + box_h)


def _folded_beta(rng: np.random.Generator, alpha: float) -> float:
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def cutmix_weight(box: Box, width: int, height: int) -> float:
    """The image's own weight: the fraction of its area the box leaves in place."""
    x0, y0, x1, y1 = box
    return 1.0 - ((x1 - x0) * (y1 - y0)) / (width * height)


# Mosaic's draws and areas live here, with no image library, for the plan; the pixels and
# objects are recipe/mosaic.py, which documents the geometry.


def mosaic_centre(
    rng: np.random.Generator, width: int, height: int, span: tuple[float, float] = MOSAIC_CENTRE
) -> tuple[int, int]:
    """A whole-pixel centre, uniform in [lo, hi] of the width and of the height."""
    if span == MOSAIC_CENTRE:  # the integer bounds the default always had (same draws)
        lo_x, hi_x, lo_y, hi_y = width // 4, 3 * width // 4, height // 4, 3 * height // 4
    else:
        lo_x, hi_x = math.ceil(width * span[0]), math.floor(width * span[1])
        lo_y, hi_y = math.ceil(height * span[0]), math.floor(height * span[1])
    cx = int(rng.integers(lo_x, max(hi_x, lo_x) + 1))
    cy = int(rng.integers(lo_y, max(hi_y, lo_y) + 1))
    return cx, cy


def tile_boxes(
    centre: tuple[int, int], size: tuple[int, int], scales: Sequence[float] = ()
) -> list[Box]:
    """Where each of the four images goes (before the output's edge cuts it): half the
    output's size each, times its scale when the entry has a tile `scale`."""
    (cx, cy), (width, height) = centre, size
    sides = [(width // 2, height // 2)] * 4
    if scales:
        sides = [(max(1, round(width // 2 * s)), max(1, round(height // 2 * s))) for s in scales]
    (w0, h0), (w1, h1), (w2, h2), (w3, h3) = sides
    return [
        (cx - w0, cy - h0, cx, cy),
        (cx, cy - h1, cx + w1, cy),
        (cx - w2, cy, cx, cy + h2),
        (cx, cy, cx + w3, cy + h3),
    ]


def visible_part(box: Box, size: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    return max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])


def mosaic_weights(
    centre: tuple[int, int], size: tuple[int, int], scales: Sequence[float] = ()
) -> list[float]:
    """Each image's share of the output's pixels."""
    total = size[0] * size[1]
    weights = []
    for box in tile_boxes(centre, size, scales):
        x0, y0, x1, y1 = visible_part(box, size)
        weights.append(round(max(x1 - x0, 0) * max(y1 - y0, 0) / total, WEIGHT_DECIMALS))
    return weights


def mixup(image: np.ndarray, partner: np.ndarray, weight: float) -> np.ndarray:
    """weight * image + (1 - weight) * partner, rounded to uint8."""
    _check_pair(image, partner)
    blend = weight * image.astype(np.float64) + (1.0 - weight) * partner.astype(np.float64)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def cutmix(image: np.ndarray, partner: np.ndarray, box: Box) -> np.ndarray:
    """image with the partner's pixels inside box."""
    _check_pair(image, partner)
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = partner[y0:y1, x0:x1]
    return out


def soft_label(parts: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Class -> probability from (label, weight) pairs; sorted by class for stable output."""
    probs: dict[str, float] = {}
    for label, weight in parts:
        probs[label] = probs.get(label, 0.0) + weight
    return dict(sorted(probs.items()))


def dominant_label(probs: Mapping[str, float], own_label: str) -> str:
    """The class with the largest weight; a tie goes to the image's own class, so a 50/50
    mix lands in the folder of the image it was made from."""
    best = max(probs.values())
    if probs.get(own_label) == best:
        return own_label
    return min(label for label, weight in probs.items() if weight == best)


def _check_pair(image: np.ndarray, partner: np.ndarray) -> None:
    if image.shape != partner.shape:
        raise ValueError(f"cannot mix images of shapes {image.shape} and {partner.shape}")
