"""What the command line offers and the library assumes, without loading an image library.

`augment --help`, `augment diff` and a rerun that changes nothing need none of numpy,
OpenCV, Pillow or albumentations, whose imports are most of a command's start-up (about
half a second); so the defaults and choices they show live here, not next to the code that
decodes or compares images.
"""

from __future__ import annotations

import os

# Output formats: `same` keeps JPEG/PNG/WebP and writes the others as PNG.
FORMAT_CHOICES = ("same", "jpg", "png", "webp")
# Source files by extension (what is inside is checked when the file is read).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit, made explicit
# The holdout when SRC is not split already (a fraction of each class).
DEFAULT_VAL = 0.1
DEFAULT_TEST = 0.1
# A source already split: folders (or a labels file's `split` values) with these names, in
# any case, are its splits; the value is the output's split.
SPLIT_NAMES = {
    "train": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}

# Measured on the bundled sample data (README, "Audit"; benchmarks/similarity_margins.py):
# re-encoded (JPEG q30-q70), resized and mirrored copies stay within 4 bits; two different
# originals are >= 10 bits apart (12 in textures); augmented variants of one 8x8 digit come
# within 6-8 bits of another digit on a few seeds (2 pairs of 82,000 at 6). Distances are
# nearly always even (each hash sets the same number of bits): 6 keeps 2 bits of margin on
# each side.
DEFAULT_MAX_DISTANCE = 6
# Two same-size images whose 4x4 block means agree to this PSNR (dB) are one re-encoded
# picture (see augment/similarity.py).
REENCODE_MIN_PSNR = 34.0


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
