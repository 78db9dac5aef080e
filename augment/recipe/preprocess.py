"""The recipe's `preprocess` part: bring every image to one size, identically for every split.

Preprocessing runs on validation and test originals as well as on training images, so it must
be deterministic and carry no randomness; the random part of a recipe lives in its transforms.

Fit modes, for a target of W x H:
- `pad`: resize keeping the aspect ratio so the image fits inside W x H, then pad to exactly
  W x H with the image centred. The pad is filled according to `pad_mode`.
- `crop`: resize keeping the aspect ratio so the image covers W x H, then centre-crop.
- `stretch`: resize to W x H, ignoring the aspect ratio.

Pad modes: `constant` (pad_color), `reflect` (mirror without repeating the edge pixel),
`edge` (replicate the edge pixel), `wrap` (tile around) and `blur` (a heavily blurred,
cover-cropped copy of the image behind the sharp fitted image, the "blurred background" look).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import cv2
import numpy as np

from augment.defaults import DEFAULT_MAX_PIXELS
from augment.errors import RecipeError

__all__ = [
    "FIT_MODES",
    "INTERPOLATIONS",
    "PAD_MODES",
    "FitMode",
    "PadMode",
    "Preprocess",
    "apply_preprocess",
]

FitMode = Literal["pad", "crop", "stretch"]
PadMode = Literal["constant", "reflect", "edge", "wrap", "blur"]
Interpolation = Literal["area", "linear", "cubic", "lanczos", "nearest"]

FIT_MODES: tuple[str, ...] = get_args(FitMode)
PAD_MODES: tuple[str, ...] = get_args(PadMode)

# INTER_NEAREST_EXACT rather than INTER_NEAREST: the latter samples with a half-pixel shift,
# so "nearest" would not pick the nearest pixel and would disagree with Pillow.
INTERPOLATIONS: dict[str, int] = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST_EXACT,
}

_BORDERS: dict[str, int] = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "edge": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
}

# The blurred background is computed at this size (longer side) and scaled up: a blur this
# heavy leaves no detail that a full-resolution pass would keep, and a kernel proportional to
# a large output (hundreds of pixels wide) would dominate the cost of the whole pipeline.
# At 32 the blur costs a fifth of what it does at 64 (0.02 against 0.1 ms), and the
# background it gives differs by 42-50 dB PSNR on skimage's photos: no visible difference.
_BLUR_WORK_SIDE = 32
# Gaussian sigma of the background blur as a fraction of the output's longer side: enough that
# the background reads as colour, not content, so a model cannot learn from a second copy.
_BLUR_SIGMA_FRACTION = 0.06

_HEX_COLOR = re.compile(r"#?([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class Preprocess:
    """How every image is brought to the output size. width/height None keeps each image's size."""

    width: int | None = None
    height: int | None = None
    fit: FitMode = "pad"
    pad_mode: PadMode = "constant"
    pad_color: tuple[int, int, int] = (0, 0, 0)
    interpolation: Interpolation = "area"

    def __post_init__(self) -> None:
        # Validated here as well as in from_dict, so a Preprocess built in code cannot carry a
        # value that would only fail inside a worker.
        if (self.width is None) != (self.height is None):
            raise ValueError(
                "preprocess: width and height must be given together (or use size), "
                f"got width={self.width!r}, height={self.height!r}"
            )
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None:
                # Normalised to int so to_dict stays JSON-able when numpy integers come in.
                object.__setattr__(self, key, _positive_int(key, value))
        _check_choice("fit", self.fit, FIT_MODES)
        _check_choice("pad_mode", self.pad_mode, PAD_MODES)
        _check_choice("interpolation", self.interpolation, tuple(INTERPOLATIONS))
        if not isinstance(self.pad_color, tuple) or len(self.pad_color) != 3:
            raise ValueError(
                "preprocess.pad_color: expected a tuple of three integers 0..255, "
                f"got {self.pad_color!r}"
            )
        object.__setattr__(self, "pad_color", _parse_color(self.pad_color))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of every output, or None when images keep their own size."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    def needed_source_size(self, width: int, height: int) -> tuple[int, int]:
        """The smallest size a width x height source may be decoded at for this fit to give
        the same picture: the fitted image's size (the blurred pad is far smaller still).
        A decoder may hand over a reduced image no smaller than this."""
        if self.width is None or self.height is None:
            return width, height
        if self.fit == "stretch":
            return min(width, self.width), min(height, self.height)
        sx, sy = self.width / width, self.height / height
        scale = min(sx, sy) if self.fit == "pad" else max(sx, sy)
        if scale >= 1:
            return width, height
        return min(width, math.ceil(width * scale)), min(height, math.ceil(height * scale))

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults included, with JSON types: equal specs give equal dicts, so the
        recipe fingerprint does not depend on how the recipe spelled them (size vs width/height).
        """
        return {
            "width": self.width,
            "height": self.height,
            "fit": self.fit,
            "pad_mode": self.pad_mode,
            "pad_color": list(self.pad_color),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Preprocess:
        """Build from a recipe's `preprocess` mapping; ValueError names the offending key.

        `size: 224` and `size: [W, H]` are shorthand for width/height. pad_color may be
        `[r, g, b]`, one integer for a grey, or `"#rrggbb"`. An empty or missing section means
        "keep each image's size".
        """
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ValueError(f"preprocess: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)} | {"size"}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(
                f"preprocess: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        kwargs: dict[str, Any] = {k: v for k, v in d.items() if k != "size"}
        if "size" in d:
            if "width" in d or "height" in d:
                raise ValueError("preprocess.size: give either size or width/height, not both")
            kwargs["width"], kwargs["height"] = _parse_size(d["size"])
        if "pad_color" in kwargs:
            kwargs["pad_color"] = _parse_color(kwargs["pad_color"])
        # The remaining checks live in __post_init__, shared with construction in code.
        return cls(**kwargs)


def apply_preprocess(image: np.ndarray, spec: Preprocess) -> np.ndarray:
    """Return `image` (H x W x 3 uint8) brought to spec's size: a new, C-contiguous array."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"apply_preprocess expects an H x W x 3 uint8 image, got shape {image.shape} "
            f"dtype {image.dtype}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"apply_preprocess got an empty image of shape {image.shape}")
    size = spec.size
    if size is None or (image.shape[1], image.shape[0]) == size:
        return np.ascontiguousarray(image).copy()
    width, height = size
    if spec.fit == "stretch":
        out = _resize(image, width, height, spec.interpolation)
    elif spec.fit == "crop":
        out = _cover(image, width, height, spec.interpolation)
    else:
        out = _pad(image, width, height, spec)
    return np.ascontiguousarray(out)


def _resize(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image.copy()
    flag = INTERPOLATIONS[interpolation]
    # cv2's INTER_AREA is only an area average when shrinking; when enlarging it degrades to
    # nearest-neighbour at integer factors (blocky upscales of small sources), so "area"
    # means: area when shrinking, bilinear when any axis grows.
    if flag == cv2.INTER_AREA and (width > src_w or height > src_h):
        flag = cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=flag)


def _fit_inside(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """The largest size with the source's aspect ratio that fits inside width x height."""
    scale = min(width / src_w, height / src_h)
    # round() of a value <= the bound cannot exceed the integer bound; max() keeps 1-pixel
    # strips (1 x N sources) from collapsing to zero.
    fit_w = min(width, max(1, round(src_w * scale)))
    fit_h = min(height, max(1, round(src_h * scale)))
    return fit_w, fit_h


def _cover(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    """Resize keeping aspect so the image covers width x height, centre-cropped to it.

    Crops in source pixels first and resizes the crop (as Pillow's ImageOps.fit does): the same
    picture as resize-then-crop up to rounding, without resampling pixels that are thrown away.
    """
    src_h, src_w = image.shape[:2]
    if src_w * height > width * src_h:  # source is wider than the target: trim the sides
        crop_w, crop_h = min(src_w, max(1, round(src_h * width / height))), src_h
    else:  # source is taller (or the same shape): trim top and bottom
        crop_w, crop_h = src_w, min(src_h, max(1, round(src_w * height / width)))
    x0 = (src_w - crop_w) // 2
    y0 = (src_h - crop_h) // 2
    return _resize(image[y0 : y0 + crop_h, x0 : x0 + crop_w], width, height, interpolation)


def _pad(image: np.ndarray, width: int, height: int, spec: Preprocess) -> np.ndarray:
    src_h, src_w = image.shape[:2]
    fit_w, fit_h = _fit_inside(src_w, src_h, width, height)
    fitted = _resize(image, fit_w, fit_h, spec.interpolation)
    left = (width - fit_w) // 2
    top = (height - fit_h) // 2
    right = width - fit_w - left
    bottom = height - fit_h - top
    if spec.pad_mode == "blur":
        out = _blurred_background(image, width, height)
        out[top : top + fit_h, left : left + fit_w] = fitted
        return out
    # cv2 handles pads wider than the image (it keeps reflecting/wrapping) and 1-pixel sources
    # (reflect and wrap then repeat the single pixel, i.e. behave like edge), so no special case.
    return cv2.copyMakeBorder(
        fitted,
        top,
        bottom,
        left,
        right,
        _BORDERS[spec.pad_mode],
        value=tuple(float(c) for c in spec.pad_color),
    )


def _blurred_background(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A cover-cropped copy of image at width x height, blurred until only colour remains."""
    shrink = min(1.0, _BLUR_WORK_SIDE / max(width, height))
    work_w = max(1, round(width * shrink))
    work_h = max(1, round(height * shrink))
    small = _cover(image, work_w, work_h, "area")
    sigma = _BLUR_SIGMA_FRACTION * max(work_w, work_h)
    # Reflect at the border so the blur does not darken the frame's edges towards black.
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _positive_int(key: str, value: object) -> int:
    # bool is an int subclass; `width: true` in YAML is a mistake, not 1.
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"preprocess.{key}: expected a positive integer, got {value!r}")


def _check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"preprocess.{key}: expected one of {', '.join(choices)}, got {value!r}")


def _parse_size(value: object) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _positive_int("size", value[0]), _positive_int("size", value[1])
    if isinstance(value, (list, tuple)):
        raise ValueError(f"preprocess.size: expected an integer or [width, height], got {value!r}")
    side = _positive_int("size", value)
    return side, side


def _channel(value: object) -> int | None:
    """value as a colour channel 0..255, or None if it is not one."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= 255:
        return int(value)
    return None


def _parse_color(value: object) -> tuple[int, int, int]:
    grey = _channel(value)
    if grey is not None:
        return grey, grey, grey
    if isinstance(value, str):
        match = _HEX_COLOR.fullmatch(value)
        if match:
            rgb = int(match.group(1), 16)
            return (rgb >> 16) & 0xFF, (rgb >> 8) & 0xFF, rgb & 0xFF
    if isinstance(value, (list, tuple)) and len(value) == 3:
        r, g, b = (_channel(c) for c in value)
        if r is not None and g is not None and b is not None:
            return r, g, b
    raise ValueError(
        "preprocess.pad_color: expected [r, g, b] with integers 0..255, one integer 0..255 "
        f"or '#rrggbb', got {value!r}"
    )


# The largest side each output format can hold (libjpeg's JPEG_MAX_DIMENSION, WebP's
# 14-bit sizes; PNG's 31-bit sizes are past any memory first).
FORMAT_MAX_SIDE = {"jpg": 65_500, "webp": 16_383, "png": 2**31 - 1}
FORMAT_NAMES = {"jpg": "JPEG", "webp": "WebP", "png": "PNG"}


def size_problem(width: int, height: int, output_format: str, max_pixels: int) -> str | None:
    """Why an output of width x height cannot be made (its format cannot hold it, or it is
    over the pixel budget a run keeps to: --max-pixels, which bounds the sources, and never
    less than its default, so a low limit for sources does not refuse small outputs), or
    None. `same` is each source's own format, known per source."""
    max_pixels = max(max_pixels, DEFAULT_MAX_PIXELS)
    limit = FORMAT_MAX_SIDE.get(output_format)
    if limit is not None and max(width, height) > limit:
        name = FORMAT_NAMES[output_format]
        return f"{width}x{height}: a {name} image is at most {limit} pixels a side"
    if width * height > max_pixels:
        return (
            f"{width}x{height} is {width * height:,} pixels an image, over the limit of "
            f"{max_pixels:,} (--max-pixels)"
        )
    return None


def check_output_size(spec: Preprocess, output_format: str, max_pixels: int, where: str) -> None:
    """At recipe load: a `preprocess.size` no output can have is the recipe's mistake, told
    before any image is made."""
    if spec.size is not None:
        problem = size_problem(*spec.size, output_format, max_pixels)
        if problem is not None:
            raise RecipeError(f"{where}: preprocess.size {problem}")
