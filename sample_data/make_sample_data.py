"""Generate the bundled sample datasets in ``sample_data/`` from data shipped with scikit-image
and scikit-learn (no network access needed).

Usage (from the repository root)::

    python sample_data/make_sample_data.py

Writes two class-folder (torchvision ``ImageFolder``) datasets next to this script:

* ``textures/<class>/<class>_NN.jpg`` - 5 classes x 10 non-overlapping crops of varied,
  mostly non-square sizes, cut from scikit-image sample photos; JPEG quality 92. The grayscale
  sources stay single-channel ('L') JPEGs on purpose.
* ``digits/<d>/digit<d>_NN.png`` - the first 6 samples of each class 0..9 of scikit-learn's
  ``load_digits`` (8x8, values 0..16) mapped to 0..255 and upscaled x4 (nearest) to 32x32;
  8-bit grayscale PNG, white digit on black.

The output is fully deterministic (no randomness at all): running the script again produces
byte-identical files with the same library versions. The ``textures/`` and ``digits/`` folders
are deleted and rewritten on every run. As a self-check, the script computes a 64-bit dHash of
every written texture image and fails if any two are closer than ``MIN_DHASH_DISTANCE``.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_digits

JPEG_QUALITY = 92
DIGITS_PER_CLASS = 6
DIGIT_SCALE = 4
# Every pair of texture images must differ in more than this many of the 64 dHash bits.
MIN_DHASH_DISTANCE = 10

Size = tuple[int, int]  # (width, height)
Shelf = list[Size]


@dataclass(frozen=True)
class Box:
    """A crop rectangle in source-pixel coordinates (right/bottom exclusive)."""

    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def overlaps(self, other: Box) -> bool:
        return not (
            self.right <= other.left
            or other.right <= self.left
            or self.bottom <= other.top
            or other.bottom <= self.top
        )


@dataclass(frozen=True)
class TextureClass:
    name: str
    load: Callable[[], npt.NDArray[np.uint8]]
    # Crop sizes, laid out as horizontal shelves (rows) over the source image. Sizes are
    # (width, height), all within 96..200 px; most are non-square, a few odd-sized.
    shelves: list[Shelf]


TEXTURE_CLASSES: list[TextureClass] = [
    TextureClass(
        "brick",
        skdata.brick,  # 512x512 grayscale
        [
            [(200, 136), (97, 168), (176, 150)],
            [(120, 160), (152, 104), (112, 144), (104, 120)],
            [(160, 160), (136, 120), (184, 144)],
        ],
    ),
    TextureClass(
        "grass",
        skdata.grass,  # 512x512 grayscale
        [
            [(144, 200), (184, 128), (150, 176)],
            [(200, 112), (128, 96), (168, 120)],
            [(104, 160), (131, 176), (120, 144), (136, 100)],
        ],
    ),
    TextureClass(
        "gravel",
        skdata.gravel,  # 512x512 grayscale
        [
            [(192, 120), (120, 176), (176, 144)],
            [(104, 144), (160, 112), (112, 136), (113, 96)],
            [(200, 150), (144, 176), (128, 104)],
        ],
    ),
    TextureClass(
        "histology",
        skdata.immunohistochemistry,  # 512x512 RGB
        [
            [(176, 176), (136, 104), (180, 160)],
            [(100, 150), (200, 128), (160, 96)],
            [(128, 168), (112, 136), (152, 120), (96, 144)],
        ],
    ),
    TextureClass(
        "deep_space",
        skdata.hubble_deep_field,  # 1000 wide x 872 high, RGB
        [
            [(200, 160), (120, 192), (176, 112), (144, 144)],
            [(160, 120), (104, 176), (192, 136)],
            [(136, 100), (184, 152), (99, 128)],
        ],
    ),
]


def shelf_layout(src_width: int, src_height: int, shelves: list[Shelf]) -> list[Box]:
    """Place crops row by row, spreading the spare space evenly so crops never touch.

    Within a shelf, crops are spaced evenly across the width and centred vertically in the
    shelf; shelves are spaced evenly down the height. Raises if the layout does not fit.
    """
    shelf_heights = [max(h for _, h in shelf) for shelf in shelves]
    spare_y = src_height - sum(shelf_heights)
    gap_y = spare_y // (len(shelves) + 1)
    if gap_y < 1:
        raise ValueError(f"shelves are {sum(shelf_heights)} px high; source is {src_height}")
    boxes: list[Box] = []
    top = gap_y
    for shelf, shelf_h in zip(shelves, shelf_heights, strict=True):
        spare_x = src_width - sum(w for w, _ in shelf)
        gap_x = spare_x // (len(shelf) + 1)
        if gap_x < 1:
            raise ValueError(f"shelf {shelf} does not fit in width {src_width}")
        left = gap_x
        for w, h in shelf:
            boxes.append(Box(left, top + (shelf_h - h) // 2, w, h))
            left += w + gap_x
        top += shelf_h + gap_y
    return boxes


def check_boxes(boxes: list[Box], src_width: int, src_height: int) -> None:
    for box in boxes:
        if box.left < 0 or box.top < 0 or box.right > src_width or box.bottom > src_height:
            raise ValueError(f"{box} is outside the {src_width}x{src_height} source")
    for a, b in itertools.combinations(boxes, 2):
        if a.overlaps(b):
            raise ValueError(f"crops overlap: {a} and {b}")


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: 9x8 grayscale thumbnail, one bit per horizontal neighbour pair."""
    small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    px = np.asarray(small, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def make_textures(root: Path) -> list[Path]:
    written: list[Path] = []
    for cls in TEXTURE_CLASSES:
        src = cls.load()
        src_h, src_w = src.shape[:2]
        boxes = shelf_layout(src_w, src_h, cls.shelves)
        check_boxes(boxes, src_w, src_h)
        out_dir = root / cls.name
        out_dir.mkdir(parents=True)
        for i, box in enumerate(boxes, start=1):
            crop = np.ascontiguousarray(src[box.top : box.bottom, box.left : box.right])
            path = out_dir / f"{cls.name}_{i:02d}.jpg"
            Image.fromarray(crop).save(path, format="JPEG", quality=JPEG_QUALITY)
            written.append(path)
            print(
                f"  {path.relative_to(root.parent)}: {box.width}x{box.height} from "
                f"x={box.left}..{box.right - 1}, y={box.top}..{box.bottom - 1} "
                f"of {src_w}x{src_h}"
            )
    return written


def make_digits(root: Path) -> list[Path]:
    bunch = load_digits()
    images: npt.NDArray[np.float64] = bunch.images
    targets: npt.NDArray[np.int_] = bunch.target
    written: list[Path] = []
    for digit in range(10):
        indices = np.flatnonzero(targets == digit)[:DIGITS_PER_CLASS]
        out_dir = root / str(digit)
        out_dir.mkdir(parents=True)
        for i, idx in enumerate(indices, start=1):
            pixels = np.rint(images[idx] * 255.0 / 16.0).astype(np.uint8)
            big = np.repeat(np.repeat(pixels, DIGIT_SCALE, axis=0), DIGIT_SCALE, axis=1)
            path = out_dir / f"digit{digit}_{i:02d}.png"
            Image.fromarray(big, mode="L").save(path, format="PNG")
            written.append(path)
        print(f"  digits/{digit}: dataset indices {', '.join(str(int(j)) for j in indices)}")
    return written


def min_pairwise_dhash(paths: list[Path]) -> tuple[int, Path, Path]:
    hashes: list[tuple[Path, int]] = []
    for path in paths:
        with Image.open(path) as im:
            hashes.append((path, dhash(im)))
    best: tuple[int, Path, Path] | None = None
    for (pa, ha), (pb, hb) in itertools.combinations(hashes, 2):
        dist = (ha ^ hb).bit_count()
        if best is None or dist < best[0]:
            best = (dist, pa, pb)
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: the folder holding this script)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out

    textures_root = out / "textures"
    digits_root = out / "digits"
    for folder in (textures_root, digits_root):
        if folder.exists():
            shutil.rmtree(folder)

    print("textures:")
    textures = make_textures(textures_root)
    print("digits:")
    digits = make_digits(digits_root)

    dist, pa, pb = min_pairwise_dhash(textures)
    print(f"wrote {len(textures)} texture images and {len(digits)} digit images")
    print(
        f"minimum pairwise dHash distance over {len(textures)} textures: {dist} "
        f"({pa.relative_to(out)} vs {pb.relative_to(out)})"
    )
    if dist <= MIN_DHASH_DISTANCE:
        print(f"error: near-duplicate textures (distance <= {MIN_DHASH_DISTANCE})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
