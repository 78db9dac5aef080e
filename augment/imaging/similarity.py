"""Telling whether two images are the same picture: pixel digests and perceptual hashes.

Two notions, used by `augment audit` and by the near-duplicate grouping of `expand`:

- **Same decoded pixels** (exact duplicates). Images are decoded by the tool's own rules
  (`imageio.decode`: upright, 8-bit RGB). Two images are *identical* when those arrays are
  equal (a byte copy, a lossless re-save, a metadata-only edit). A lossy re-encode (another
  JPEG quality) never gives equal arrays: its error is high-frequency noise of up to tens of
  levels per pixel, which averages out over small blocks. So two images of the same size
  count as *re-encoded* copies of one picture when their means over 4 x 4 pixel blocks agree
  to PSNR >= `REENCODE_MIN_PSNR` dB. Measured on the sample data: JPEG re-encodes down to
  quality 30 score >= 35 dB; a brightness shift of 12 levels scores 26.5 dB and a 2-pixel
  shift <= 30.3 dB, so real edits (shift, crop, resize, flip, tone) fall below.
- **Near duplicates**: a 64-bit DCT perceptual hash (pHash) of the grayscale image; two
  images are near duplicates when their hashes differ in at most `DEFAULT_MAX_DISTANCE`
  bits. The hash of the horizontal mirror is kept too, so a mirrored copy is found.

pHash: the image is reduced to 32 x 32 grayscale (area averaging), its 2-D DCT taken, and
each of the 64 lowest-frequency coefficients gives one bit: above or below their median
(the DC term excluded from the median). Resizing, re-encoding and mild noise or brightness
changes barely move those coefficients; different pictures differ in about half the bits.

Crops and shifts of a picture are found by hashing its crop windows: see `crops.py`.

The hash is less reliable for tiny images: below `_HASH_SIDE` pixels a side the 32 x 32
input is an upsampled copy, and the 64 bits describe less picture than they seem to. On
MNIST's 28 x 28 handwritten digits, 0.13% of the pairs of *different* digits come within 6
bits (0.04% within 4), enough to join a few hundred of 1,000 digits to a look-alike; crafted
copies of those digits (JPEG q30, half size, mirrored) stay within 4 bits in 97-100% of
cases. So `pair_max_distance` lowers the threshold by `SMALL_IMAGE_MARGIN` bits when either
image is smaller than `_HASH_SIDE` a side (see docs/holdout.md for the measured rates).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from augment.imaging.codec import decode
from augment.imaging.digests import ImageHash, sha256_bytes

HASH_BITS = 64
_REENCODE_BLOCK = 4
_HASH_SIDE = 32
_DCT_SIDE = 8
# Decoding at 1/8 scale is plenty for a 32 x 32 hash and ~20x cheaper for large JPEGs.
_DRAFT_SIDE = 64


# Bits taken off the near-duplicate threshold for a pair with an image under _HASH_SIDE a side.
SMALL_IMAGE_MARGIN = 2


def pair_max_distance(max_distance: int, smaller_side: int) -> int:
    """The threshold for a pair of images whose smallest side (of either) is `smaller_side`."""
    if smaller_side < _HASH_SIDE:
        return max(0, max_distance - SMALL_IMAGE_MARGIN)
    return max_distance


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8)).tobytes(), "big")


def phash_gray(gray: np.ndarray) -> ImageHash:
    """pHash of a 2-D grayscale array (any size, any numeric type) and of its mirror."""
    small = cv2.resize(
        np.ascontiguousarray(gray, dtype=np.float32),
        (_HASH_SIDE, _HASH_SIDE),
        interpolation=cv2.INTER_AREA,
    )
    hashes = []
    for img in (small, np.ascontiguousarray(small[:, ::-1])):
        low = cv2.dct(img)[:_DCT_SIDE, :_DCT_SIDE].flatten()
        hashes.append(_bits_to_int(low > np.median(low[1:])))
    return ImageHash(direct=hashes[0], mirror=hashes[1])


def phash_rgb(pixels: np.ndarray) -> ImageHash:
    """pHash of an H x W x 3 uint8 RGB array (as `imageio.decode` gives)."""
    return phash_gray(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))


def phash_bytes(data: bytes) -> ImageHash:
    """pHash straight from encoded bytes, decoding as little as the hash needs.

    The image is decoded by the tool's own rules (`imageio.decode`: upright, 8-bit RGB), so
    it is hashed as the audit and the workers see it; a JPEG is decoded at 1/2 to 1/8 scale,
    no smaller than `_DRAFT_SIDE` a side. Raises `UnreadableImage` for an unreadable file.
    """
    return phash_rgb(decode(data, needed=_draft_size).pixels)


def _draft_size(width: int, height: int) -> tuple[int, int]:
    return min(width, _DRAFT_SIDE), min(height, _DRAFT_SIDE)


def pixel_digest(pixels: np.ndarray) -> str:
    """Identity of decoded pixels: equal digests <=> equal shape and equal values."""
    header = "x".join(map(str, pixels.shape)).encode() + b"\x00"
    return sha256_bytes(header + np.ascontiguousarray(pixels).tobytes())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two equal-shape uint8 arrays (inf when equal)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def block_psnr(a: np.ndarray, b: np.ndarray, block: int = _REENCODE_BLOCK) -> float:
    """PSNR of the means over `block` x `block` pixel blocks: blind to codec noise."""
    height, width = a.shape[:2]
    size = (max(1, width // block), max(1, height // block))
    return psnr(
        cv2.resize(a, size, interpolation=cv2.INTER_AREA),
        cv2.resize(b, size, interpolation=cv2.INTER_AREA),
    )


def hamming_pairs(
    left: np.ndarray, right: np.ndarray, max_distance: int, pairs_per_block: int = 1 << 20
) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for every left[i], right[j] at most `max_distance` bits apart.

    Brute force with numpy bit operations, in blocks of rows of about `pairs_per_block`
    pairs: ~10 bytes per pair (XOR, bit count, comparison), so ~10 MB whatever the sizes
    (blocks of a fixed 2,048 rows took 200 MB against 10,000 originals). About 5 x 10^7
    pairs per second on one core. `hash_index.near_pairs` gives the same pairs from far fewer
    comparisons for large sets, and falls back on this for small ones.
    """
    block = max(1, pairs_per_block // max(1, len(right)))
    for start in range(0, len(left), block):
        chunk = left[start : start + block]
        dist = np.bitwise_count(chunk[:, None] ^ right[None, :])
        for i, j in zip(*np.nonzero(dist <= max_distance), strict=True):
            yield start + int(i), int(j), int(dist[i, j])
