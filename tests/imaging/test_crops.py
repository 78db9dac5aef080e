"""The crop search's parts on real pictures: window hashes are each window's pHash, a crop
or a shifted copy lands near a window and fits it by the pixels, a look-alike does not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from augment.imaging.codec import decode
from augment.imaging.crops import (
    CROP_MIN_SIDE,
    core_box,
    crop_fit,
    crop_window_hashes,
    crop_windows,
    window_boxes,
)
from augment.imaging.similarity import phash_gray
from tests.helpers import DIGITS, TEXTURES


def gray(path: str, side: int | None = None) -> np.ndarray:
    """A sample picture in grey, scaled up to `side` as the default recipe's resize does."""
    root = TEXTURES if path.startswith(("brick", "grass", "gravel")) else DIGITS
    pixels = cv2.cvtColor(decode((root / path).read_bytes()).pixels, cv2.COLOR_RGB2GRAY)
    if side is not None:
        pixels = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_LINEAR)
    return pixels


def closest_window(copy: np.ndarray, original: np.ndarray) -> tuple[int, tuple[int, ...]]:
    """The bits from the copy's hash (whole or trimmed) to the nearest window, and its box."""
    hashes, boxes = crop_windows(original)
    probes = [phash_gray(copy).direct]
    box = core_box(copy)
    if box is not None:
        top, left, height, width = box
        probes.append(phash_gray(copy[top : top + height, left : left + width]).direct)
    best = min(
        (int(np.bitwise_count(np.uint64(p) ^ h)), n) for p in probes for n, h in enumerate(hashes)
    )
    return best[0], tuple(int(v) for v in boxes[best[1]])


def test_each_window_hash_is_the_phash_of_that_window() -> None:
    picture = gray("brick/brick_01.jpg")
    hashes, boxes = crop_windows(picture)
    assert len(hashes) == 100  # brick is nowhere flat
    for found, (top, left, height, width) in zip(hashes, boxes, strict=True):
        assert int(found) == phash_gray(picture[top : top + height, left : left + width]).direct


@pytest.mark.parametrize("size", [(224, 224), (1050, 1400)])
def test_window_numbers_name_the_boxes_the_audit_keeps_9_bytes_a_window(
    size: tuple[int, int],
) -> None:
    """The audit keeps each window as its hash and its number (9 bytes): the number's box in
    `window_boxes` of the picture's size is the window's box, also over 512 px a side
    (windows of the reduced picture)."""
    picture = cv2.resize(gray("gravel/gravel_02.jpg"), size[::-1])
    hashes, numbers = crop_window_hashes(picture)
    expected, boxes = crop_windows(picture)
    assert (hashes == expected).all() and (window_boxes(size)[numbers] == boxes).all()
    assert hashes.nbytes + numbers.nbytes == 9 * len(hashes) > 0


def test_a_picture_under_the_smallest_side_has_no_windows() -> None:
    digit = gray("1/digit1_04.png")
    assert max(digit.shape) < CROP_MIN_SIDE
    hashes, boxes = crop_windows(digit)
    assert len(hashes) == 0 and boxes.shape == (0, 4)


def crop(picture: np.ndarray, share: float, top: int, left: int) -> np.ndarray:
    height, width = picture.shape
    return np.ascontiguousarray(
        picture[top : top + round(height * share), left : left + round(width * share)]
    )


def jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("picture", ["grass/grass_01.jpg", "gravel/gravel_02.jpg"])
def test_a_crop_resized_and_re_encoded_still_fits_its_window(picture: str) -> None:
    original = gray(picture)
    height, width = original.shape
    # Off-centre, so that no window starts exactly there; then resized back up and saved as
    # JPEG quality 70, as a careless export would.
    copy = crop(original, 0.88, height // 23, width // 17)
    for made in (copy, jpeg(cv2.resize(copy, (width, height)), 70)):
        bits, window = closest_window(made, original)
        assert bits <= 6
        assert crop_fit(made, original, window).matches


def test_a_shifted_copy_with_a_black_band_fits_by_its_core() -> None:
    original = gray("brick/brick_01.jpg")
    height, width = original.shape
    move = np.float32([[1, 0, width // 10], [0, 1, -(height // 10)]])
    shifted = cv2.warpAffine(original, move, (width, height), borderMode=cv2.BORDER_CONSTANT)
    bits, window = closest_window(shifted, original)
    assert bits <= 6
    assert crop_fit(shifted, original, window).matches
    mirrored = np.ascontiguousarray(shifted[:, ::-1])
    assert crop_fit(mirrored, original, window, mirrored=True).matches


def test_two_different_handwritten_fives_do_not_fit_each_other() -> None:
    """Two 5s of the digits sample, scaled up to 224 px as `expand`'s default recipe does:
    a crop of one is 6 bits from a window of the other, and correlates 0.97 with it placed
    (smooth strokes on black, much alike), but differs from it by some 25 grey levels,
    where a copy differs by a few: not a match. A crop of the other itself is one."""
    one, other = gray("5/digit5_06.png", 224), gray("5/digit5_05.png", 224)
    copy = crop(one, 0.9, 11, 11)
    bits, window = closest_window(copy, other)
    assert bits <= 6
    fit = crop_fit(copy, other, window)
    assert fit.correlation > 0.95 and not fit.matches
    assert crop_fit(crop(other, 0.9, 11, 11), other, window).matches


def test_a_crop_of_a_large_photo_is_found_from_its_reduced_windows() -> None:
    """A photo over 512 px a side has its windows taken from an area reduction: a 90 % crop
    of it, at full size, still lands near a window and fits it."""
    from skimage import data as skdata

    photo = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY), (1400, 1050))
    copy = crop(photo, 0.9, 61, 37)
    bits, window = closest_window(copy, photo)
    assert bits <= 6
    fit = crop_fit(copy, photo, window)
    assert fit.matches and fit.correlation > 0.99


@pytest.mark.parametrize("name", ["camera", "checkerboard"])
def test_a_smaller_heavily_compressed_crop_of_a_photo_still_fits(name: str) -> None:
    """85 % of a scikit-image picture, shrunk to two thirds and saved as JPEG quality 30:
    near a window by the hash, and a match by the pixels (high contrast: the residual at the
    edges is large, the correlation stays)."""
    from skimage import data as skdata

    photo = np.asarray(getattr(skdata, name)(), dtype=np.uint8)
    height, width = photo.shape
    small = cv2.resize(
        crop(photo, 0.85, height // 23, width // 17),
        (width * 2 // 3, height * 2 // 3),
        interpolation=cv2.INTER_AREA,
    )
    copy = jpeg(small, 30)
    bits, window = closest_window(copy, photo)
    assert bits <= 6
    assert crop_fit(copy, photo, window).matches
