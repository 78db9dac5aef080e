"""The loop an imgaug user writes for the default recipe, as a command of its own.

    python benchmarks/imgaug_loop.py CORPUS OUT --times 5 --size 224 224 --quality 95

benchmarks/bench.py runs it with an interpreter that has imgaug (`--imgaug-python`): imgaug
needs an environment of its own (the `imgaug` extra pins OpenCV and numpy below the core's),
so it is timed as a whole command, start-up included, next to the `augment expand` command.
cv2 decode, imgaug's resize of the longer side and reflected pad to the output size, then the
default recipe's transforms in imgaug's words, cv2 encode; one OpenCV thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import imgaug.augmenters as iaa
import numpy as np


def fit(width: int, height: int) -> iaa.Sequential:
    return iaa.Sequential(
        [
            iaa.Resize({"longer-side": max(width, height), "shorter-side": "keep-aspect-ratio"}),
            iaa.PadToFixedSize(width, height, pad_mode="reflect", position="center"),
            iaa.CropToFixedSize(width, height, position="center"),
        ]
    )


def default_recipe() -> iaa.Sequential:
    """The default recipe (pipelines/default.yaml) in imgaug's augmenters."""
    return iaa.Sequential(
        [
            iaa.Fliplr(0.5),
            iaa.Sometimes(
                0.7,
                iaa.Affine(
                    rotate=(-12, 12),
                    scale=(0.9, 1.1),
                    translate_percent=(-0.06, 0.06),
                    mode="reflect",
                ),
            ),
            iaa.Sometimes(
                0.6, iaa.Sequential([iaa.Add((-51, 51)), iaa.LinearContrast((0.8, 1.2))])
            ),
            iaa.Sometimes(0.3, iaa.AdditiveGaussianNoise(scale=(4, 12))),
            iaa.Sometimes(0.3, iaa.Cutout(nb_iterations=(1, 3), size=(0.08, 0.2), cval=0)),
        ],
        seed=0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--size", type=int, nargs=2, default=(224, 224))
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    resize = fit(*args.size)
    augmenter = default_recipe()
    params = [cv2.IMWRITE_JPEG_QUALITY, args.quality]
    args.out.mkdir(parents=True)
    files = sorted(p for p in args.corpus.rglob("*") if p.is_file() and not p.name.startswith("."))
    for n, path in enumerate(files):
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        image = resize(image=image)
        for v in range(args.times):
            pixels = image if v == 0 else augmenter(image=image)
            ok, data = cv2.imencode(".jpg", pixels, params)
            assert ok
            (args.out / f"{n}_{v}.jpg").write_bytes(data.tobytes())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
