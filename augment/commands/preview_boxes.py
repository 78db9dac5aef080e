"""Boxes on `augment preview`'s cells for annotated sets: each object's box in its class's
colour, with the class name, at the thumbnail's scale."""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

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
