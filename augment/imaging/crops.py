"""Finding a crop or a shifted copy of a picture: crop-window hashes, and a pixel check.

A crop of a picture has another pHash than the picture (`similarity.phash_gray`). So the
picture is also hashed in windows: at `CROP_SCALES` of its sides, on a `CROP_STEPS` x
`CROP_STEPS` grid of places, so that any crop of 80-95% of the sides lies within a few pixels
of one window, whose hash is then within a few bits of the crop's. A shift that fills the
uncovered band with one colour (Affine's default) is a crop once that band is trimmed:
`core_box` finds the image without its uniform borders. Windows whose low frequencies are
nearly flat are left out: every flat image has much the same hash.

The windows' hashes are the pHash of each window, computed at once: the pHash's 32 x 32
area reduction and the 8 x 8 low corner of its DCT are both linear, so the low DCT block of
every window is `A @ image @ B.T`, where a row of `A` (of `B`) is one DCT basis row times
the area weights of one window's 32 rows (columns). Two matrix products per picture replace
a hundred resizes and transforms, and give the same bits.

A hash match between a file and a window of another is a candidate only: among thousands
of pairs, some unrelated pictures of one kind (two handwritten 1s, upscaled from 32 px)
come within a few bits. `crop_fit` checks a candidate by its pixels: the file (or
its trimmed core) is placed over the other file near the window's place and scale, the best
placement searched by normalised correlation at `_COARSE_SIDE` and refined at `_FINE_SIDE`
pixels. A crop, shifted, resized or re-encoded copy correlates almost perfectly once placed;
look-alikes do not (`CropFit.matches`; docs/audit.md has the measured values).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from augment.imaging.digests import ImageHash
from augment.imaging.similarity import phash_gray

# Crop windows: sides as fractions of the picture's, and places per axis (docs/audit.md has
# the measured recall and false-positive rates).
CROP_SCALES = (0.95, 0.9, 0.85, 0.8)
CROP_STEPS = 5
# Smallest side for the crop search: below it a window is a few pixels scaled up.
CROP_MIN_SIDE = 40
# A candidate pair is reported when the copy, placed over the picture, agrees with it by one
# of two measures (docs/audit.md has the measured values): a correlation of at least
# CROP_SURE_CORRELATION (a re-encoded copy of a high-contrast picture keeps it, though its
# residual is large at the edges), or of at least CROP_MIN_CORRELATION with a residual of at
# most CROP_MAX_RESIDUAL grey levels (a re-encoded low-contrast texture: noise lowers its
# correlation, not its residual). Look-alikes (two handwritten 5s) fail both.
CROP_SURE_CORRELATION = 0.99
CROP_MIN_CORRELATION = 0.95
CROP_MAX_RESIDUAL = 15.0

_HASH_SIDE = 32
_DCT_SIDE = 8
# A window whose 32 x 32 reduction's 63 low frequencies (what the hash reads) spread less
# than this (root mean square over the cells, grey levels) is flat: its hash says nothing.
# Set low: a starry night sky (sample_data's deep_space) has little low-frequency spread,
# yet a hash that finds its crops.
_FLAT_STD = 1.5
# A border row or column counts as uniform within this many grey levels of the border.
_BORDER_TOLERANCE = 3
# Windows of a larger picture are taken from its area reduction to this side: the reduced
# picture still has several pixels per cell of the 32 x 32 reduction.
_WINDOW_SIDE = 512
# The pixel check: the search at this side, then refined at the finer one.
_COARSE_SIDE = 128
_FINE_SIDE = 256
_SCALE_SPREAD = 0.05  # the copy's scale searched within this of the window's
_FINE_SPREAD = 0.012  # half a step of the search, and some
_REFINED = 3  # placements refined

_NO_ADDEND: Any = None  # cv2.gemm's optional third matrix
Box = tuple[int, int, int, int]  # top, left, height, width
_DCT_ROWS = cv2.dct(np.eye(_HASH_SIDE, dtype=np.float64), flags=cv2.DCT_ROWS).T[:_DCT_SIDE]


def _area_weights(size: int, start: float, length: int) -> np.ndarray:
    """32 x size: row k averages the pixels of cell k of [start, start + length), each
    weighted by its overlap with the cell (what cv2.INTER_AREA does)."""
    edges = start + np.arange(_HASH_SIDE + 1) * (length / _HASH_SIDE)
    pixel = np.arange(size)[None, :]
    overlap = np.minimum(pixel + 1, edges[1:, None]) - np.maximum(pixel, edges[:-1, None])
    return np.clip(overlap, 0, None) / (length / _HASH_SIDE)


@lru_cache(maxsize=32)
def _projections(size: int) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """For one axis: the DCT-projected area weights of every window, scale by scale and
    place by place (8 rows each), and each window's (start, length)."""
    rows, spans = [], []
    for scale in CROP_SCALES:
        length = round(size * scale)
        for start in np.linspace(0, size - length, CROP_STEPS).round().astype(int):
            rows.append(_DCT_ROWS @ _area_weights(size, int(start), length))
            spans.append((int(start), length))
    return np.concatenate(rows).astype(np.float32), tuple(spans)


def crop_windows(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pHashes (uint64) of the picture's crop windows that are not flat, and their boxes
    (n x 4: top, left, height, width, in the picture's pixels); none for a picture under
    CROP_MIN_SIDE a side."""
    hashes, windows = crop_window_hashes(gray)
    return hashes, window_boxes(gray.shape[:2])[windows]


def crop_window_hashes(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What `crop_windows` gives, compact: the hashes, and each one's window as its number
    (uint8) in `window_boxes` of the picture's size. An audit holds these for every file:
    9 bytes a window, where its box would take 32."""
    height, width = gray.shape[:2]
    if min(height, width) < CROP_MIN_SIDE:
        return np.empty(0, np.uint64), np.empty(0, np.uint8)
    factor = max(1.0, max(height, width) / _WINDOW_SIDE)
    small = _reduced(gray, factor)
    down, _ = _projections(small.shape[0])
    across, _ = _projections(small.shape[1])
    # Every window's 8 x 8 low DCT block, for every pair of a vertical and a horizontal window
    # of one scale: one product per scale (the whole product's diagonal blocks, a quarter of
    # its work).
    scales, steps, side = len(CROP_SCALES), CROP_STEPS, _DCT_SIDE
    rows = _product(down, small)
    per_scale = steps * side
    blocks = np.stack(
        [
            _product(
                rows[s * per_scale : (s + 1) * per_scale],
                across[s * per_scale : (s + 1) * per_scale],
                cv2.GEMM_2_T,
            )
            for s in range(scales)
        ]
    )
    low = blocks.reshape(scales, steps, side, steps, side).transpose(0, 1, 3, 2, 4)
    low = low.reshape(scales * steps * steps, side * side).astype(np.float64)
    # The low frequencies' spread in grey levels (the DCT is orthonormal over 32 x 32 cells).
    informative = np.sqrt((low[:, 1:] ** 2).sum(axis=1)) / _HASH_SIDE >= _FLAT_STD
    bits = low > np.median(low[:, 1:], axis=1)[:, None]
    hashes = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    return hashes[informative], np.flatnonzero(informative).astype(np.uint8)


@lru_cache(maxsize=64)
def window_boxes(shape: tuple[int, int]) -> np.ndarray:
    """The boxes (top, left, height, width) of every crop window of a picture of `shape`
    (height, width), by window number: scale, then row, then column."""
    height, width = shape
    factor = max(1.0, max(height, width) / _WINDOW_SIDE)
    small = (max(1, round(height / factor)), max(1, round(width / factor)))  # as _reduced
    boxes = _boxes(_projections(small[0])[1], _projections(small[1])[1], factor)
    boxes.setflags(write=False)  # shared by every picture of that size
    return boxes


def _product(a: np.ndarray, b: np.ndarray, flags: int = 0) -> np.ndarray:
    # OpenCV's product, on the calling thread: numpy's BLAS starts threads for these small
    # matrices, whose waiting costs more CPU than the product.
    return np.asarray(cv2.gemm(a, b, 1.0, _NO_ADDEND, 0.0, flags=flags))


def _boxes(
    down: tuple[tuple[int, int], ...], across: tuple[tuple[int, int], ...], factor: float
) -> np.ndarray:
    """The windows' boxes in the order of their hashes: scale, then row, then column."""
    boxes = []
    for s in range(len(CROP_SCALES)):
        rows = down[s * CROP_STEPS : (s + 1) * CROP_STEPS]
        cols = across[s * CROP_STEPS : (s + 1) * CROP_STEPS]
        boxes += [(y, x, h, w) for y, h in rows for x, w in cols]
    return np.round(np.array(boxes, dtype=np.float64) * factor).astype(np.int64)


def core_box(gray: np.ndarray) -> Box | None:
    """The picture without its uniform borders (a shifted copy's filled band), or None when
    it has none, or too little is left."""
    height, width = gray.shape[:2]
    top, bottom, left, right = 0, height, 0, width
    while bottom - top > 1 and _uniform(gray[top]):
        top += 1
    while bottom - top > 1 and _uniform(gray[bottom - 1]):
        bottom -= 1
    while right - left > 1 and _uniform(gray[top:bottom, left]):
        left += 1
    while right - left > 1 and _uniform(gray[top:bottom, right - 1]):
        right -= 1
    kept = (bottom - top, right - left)
    if kept == (height, width) or min(kept) < CROP_MIN_SIDE:
        return None
    return top, left, kept[0], kept[1]


def core_hash(gray: np.ndarray) -> ImageHash | None:
    """The pHash of `core_box`, or None when the picture has no uniform borders."""
    box = core_box(gray)
    if box is None:
        return None
    top, left, height, width = box
    return phash_gray(gray[top : top + height, left : left + width])


def _uniform(line: np.ndarray) -> bool:
    return int(line.max()) - int(line.min()) <= _BORDER_TOLERANCE


@dataclass(frozen=True)
class CropFit:
    """How a copy placed over a picture agrees with it: the normalised correlation (-1 to 1)
    and the residual, the root mean square of their difference less its mean (grey levels)."""

    correlation: float
    residual: float

    @property
    def matches(self) -> bool:
        if self.correlation >= CROP_SURE_CORRELATION:
            return True
        return self.correlation >= CROP_MIN_CORRELATION and self.residual <= CROP_MAX_RESIDUAL


_NO_FIT = CropFit(-1.0, 255.0)


def crop_fit(probe: np.ndarray, image: np.ndarray, window: Box, mirrored: bool = False) -> CropFit:
    """How well `probe` (grey), mirrored or not, fits over `image` (grey) as a crop near
    `window`: the placement of best correlation, and its fit.

    Searched: the probe and its core (without uniform borders), each at a scale within
    `_SCALE_SPREAD` of the window's, at 1:1 (a crop or shift not resized) and at the ratio
    of the two pictures' sizes (resized back to the picture's size); at any place, at
    `_COARSE_SIDE`; then refined at `_FINE_SIDE`.
    """
    height, width = image.shape[:2]
    _, _, window_h, window_w = window
    whole = probe[:, ::-1] if mirrored else probe
    regions = [whole]
    box = core_box(whole)
    if box is not None:
        top, left, h, w = box
        regions.append(whole[top : top + h, left : left + w])
    # Not resized (a plain crop or shift), or resized back to the picture's size.
    as_made = [(1.0, 1.0), (height / probe.shape[0], width / probe.shape[1])]
    spread = np.linspace(1 - _SCALE_SPREAD, 1 + _SCALE_SPREAD, 7)
    coarse = _reduced(image, max(1.0, max(height, width) / _COARSE_SIDE))
    fine = _reduced(image, max(1.0, max(height, width) / _FINE_SIDE))
    best = _NO_FIT
    for region in regions:
        sizes = [(window_h / region.shape[0] * s, window_w / region.shape[1] * s) for s in spread]
        region = np.ascontiguousarray(region, dtype=np.float32)
        fit = _placed(region, coarse, fine, sizes + as_made, (height, width))
        if fit.matches:
            return fit
        best = max(best, fit, key=lambda f: f.correlation)
    return best


def _placed(
    probe: np.ndarray,
    coarse: np.ndarray,
    fine: np.ndarray,
    sizes: list[tuple[float, float]],
    full: tuple[int, int],
) -> CropFit:
    """The best fit of `probe` over the image at one of `sizes` (image pixels per probe
    pixel, down and across): placed at `coarse` resolution, refined and measured at `fine`."""
    placed = []  # (correlation, sizes, place) at coarse resolution
    down, across = full[0] / coarse.shape[0], full[1] / coarse.shape[1]
    for size_y, size_x in sizes:
        template = _resized(probe, size_y / down, size_x / across)
        fit, y, x = _match(coarse, template)
        if fit.correlation > -1:
            placed.append((fit.correlation, size_y, size_x, y * down, x * across))
    fine_down, fine_across = full[0] / fine.shape[0], full[1] / fine.shape[1]
    margin = round(max(down / fine_down, across / fine_across)) + 2
    best = _NO_FIT
    # At coarse resolution a fine texture correlates less at the right scale, off by part of
    # a pixel, than at a wrong one: the best few are refined.
    for _, size_y, size_x, top, left in sorted(placed, reverse=True)[:_REFINED]:
        near = (round(top / fine_down), round(left / fine_across), margin)
        for change in np.linspace(1 - _FINE_SPREAD, 1 + _FINE_SPREAD, 7):
            down_by, across_by = size_y * change / fine_down, size_x * change / fine_across
            fit = _match(fine, _resized(probe, down_by, across_by), near)[0]
            best = max(best, fit, key=lambda f: f.correlation)
    return best


def _match(
    image: np.ndarray, template: np.ndarray, near: tuple[int, int, int] | None = None
) -> tuple[CropFit, int, int]:
    """The best placement of `template` over `image` by normalised correlation (within
    `margin` pixels of `near`'s top-left place when given): its fit and top-left place;
    no fit when the template does not fit in or is flat."""
    height, width = template.shape
    rows, cols = image.shape[0] - height, image.shape[1] - width
    if rows < 0 or cols < 0 or min(height, width) < 4 or float(template.std()) < 1e-3:
        return _NO_FIT, 0, 0
    top, left, bottom, right = 0, 0, rows, cols
    if near is not None:
        y, x, margin = near
        top, bottom = int(np.clip(y - margin, 0, rows)), int(np.clip(y + margin, 0, rows))
        left, right = int(np.clip(x - margin, 0, cols)), int(np.clip(x + margin, 0, cols))
    area = image[top : bottom + height, left : right + width]
    scores = cv2.matchTemplate(area, template, cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(scores)
    difference = area[y : y + height, x : x + width] - template
    residual = float(np.sqrt(np.mean((difference - difference.mean()) ** 2)))
    return CropFit(min(1.0, float(score)), residual), top + y, left + x


def _reduced(image: np.ndarray, factor: float) -> np.ndarray:
    image = np.ascontiguousarray(image, dtype=np.float32)
    if factor <= 1:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _resized(image: np.ndarray, down: float, across: float) -> np.ndarray:
    """`image` scaled by `down` and `across` (area averaging to shrink, bilinear to grow)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * across)), max(1, round(height * down)))
    if size == (width, height):
        return image
    shrink = size[0] * size[1] < width * height
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
