"""Build sample_data/detection_yolo/: scikit-learn's handwritten digits placed on crops of
scikit-image's photos, with exact boxes (YOLO layout).

Every digit is an 8 x 8 scan from `sklearn.datasets.load_digits` (the UCI optical
recognition set, bundled with scikit-learn), scaled up 4-6x with nearest-neighbour, and
pasted where its ink is: the box is the bounding box of the pixels the paste changed, so it
is exact by construction (no hand annotation). Backgrounds are crops of
`skimage.data.coffee()`, `astronaut()`, `chelsea()` and `rocket()`. Three classes (digits 0, 1,
7), 1-3 digits per image, two images without digits (negatives). Deterministic: run it
again and the files come out the same.

    python sample_data/make_detection_data.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent / "detection_yolo"
CLASSES = ["zero", "one", "seven"]
DIGIT_OF = {"zero": 0, "one": 1, "seven": 7}
IMAGES = 24
NEGATIVES = {4, 17}


def _backgrounds() -> list[np.ndarray]:
    photos = [data.coffee(), data.astronaut(), data.chelsea(), data.rocket()]
    return [np.asarray(p[..., :3], dtype=np.uint8) for p in photos]


def _paste(
    canvas: np.ndarray, digit: np.ndarray, x: int, y: int, color: np.ndarray
) -> tuple[int, int, int, int]:
    """Ink (> 4 of 16) in `color` at (x, y); returns the exact box of the changed pixels."""
    ink = digit > 4
    rows, cols = np.nonzero(ink)
    region = canvas[y : y + ink.shape[0], x : x + ink.shape[1]]
    region[ink] = color
    return (
        x + int(cols.min()),
        y + int(rows.min()),
        x + int(cols.max()) + 1,
        y + int(rows.max()) + 1,
    )


def main() -> None:
    rng = np.random.default_rng(15)
    digits = load_digits()
    by_class = {c: digits.images[digits.target == d] for c, d in DIGIT_OF.items()}
    backgrounds = _backgrounds()
    shutil.rmtree(OUT, ignore_errors=True)
    for i in range(IMAGES):
        split = "val" if i % 6 == 5 else "train"
        bg = backgrounds[i % len(backgrounds)]
        w, h = int(rng.integers(160, 241)), int(rng.integers(120, 181))
        x0, y0 = int(rng.integers(0, bg.shape[1] - w)), int(rng.integers(0, bg.shape[0] - h))
        canvas = bg[y0 : y0 + h, x0 : x0 + w].copy()
        lines: list[str] = []
        taken: list[tuple[int, int, int, int]] = []
        count = 0 if i in NEGATIVES else int(rng.integers(1, 4))
        for _ in range(count):
            name = CLASSES[int(rng.integers(len(CLASSES)))]
            pool = by_class[name]
            scale = int(rng.integers(4, 7))
            digit = np.kron(pool[int(rng.integers(len(pool)))], np.ones((scale, scale)))
            for _attempt in range(20):
                x = int(rng.integers(0, w - digit.shape[1]))
                y = int(rng.integers(0, h - digit.shape[0]))
                spot = (x, y, x + digit.shape[1], y + digit.shape[0])
                if all(
                    spot[2] <= t[0] or t[2] <= spot[0] or spot[3] <= t[1] or t[3] <= spot[1]
                    for t in taken
                ):
                    break
            else:
                continue
            taken.append(spot)
            color = np.array([255, 255, 255] if rng.random() < 0.5 else [255, 220, 0], np.uint8)
            bx0, by0, bx1, by1 = _paste(canvas, digit, x, y, color)
            lines.append(
                f"{CLASSES.index(name)} {(bx0 + bx1) / 2 / w:.6f} {(by0 + by1) / 2 / h:.6f} "
                f"{(bx1 - bx0) / w:.6f} {(by1 - by0) / h:.6f}"
            )
        stem = f"scene_{i:02d}"
        (OUT / "images" / split).mkdir(parents=True, exist_ok=True)
        (OUT / "labels" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(OUT / "images" / split / f"{stem}.jpg", quality=90)
        (OUT / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
    (OUT / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames:\n{names}")
    print(f"wrote {IMAGES} images to {OUT}")


if __name__ == "__main__":
    main()
