"""Boxes and masks on `augment preview`'s cells for annotated sets: each object's box in its
class's colour, with the class name, at the thumbnail's scale; a mask as a colour overlay."""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import ImageDraw, ImageFont


def class_colour(label: str) -> tuple[int, int, int]:
    """A bright colour per class name, the same on every sheet."""
    hue = int(hashlib.sha256(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_objects(
    draw: ImageDraw.ImageDraw,
    objects: Sequence[Mapping[str, Any]],
    origin: tuple[int, int],
    scale: float,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    left, top = origin
    for o in objects:
        x0, y0, x1, y1 = (v * scale for v in o["box"])
        colour = class_colour(o["label"])
        draw.rectangle((left + x0, top + y0, left + x1, top + y1), outline=colour, width=1)
        draw.text((left + x0 + 1, top + y0), o["label"], fill=colour, font=font)


def overlay_mask(thumb: np.ndarray, mask_png: bytes, names: Sequence[str]) -> np.ndarray:
    """The thumbnail with its class-id mask laid over it: each class in its colour (the
    same as its box), at 45% opacity; the background left as it is."""
    import cv2

    from augment.annotations.masks import class_name, decode_mask

    ids = decode_mask(mask_png)
    ids = cv2.resize(ids, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_NEAREST)
    out = thumb.astype(np.float32)
    for class_id in np.unique(ids).tolist():
        if class_id == 0:
            continue
        colour = np.array(class_colour(class_name(class_id, names or None)), np.float32)
        where = ids == class_id
        out[where] = out[where] * 0.55 + colour * 0.45
    return np.round(out).astype(np.uint8)
