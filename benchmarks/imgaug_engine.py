"""The imgaug engine's cost per output (docs/recipes.md's figures). Needs the imgaug extra.

    python benchmarks/imgaug_engine.py [--outputs 400] [--repeats 3]

The sample textures, preprocessed to 224x224 as the imgaug-seed recipe says, augmented in this
process with one OpenCV thread (as a worker runs), in five ways:

- the imgaug-seed recipe through augment's imgaug engine: seeded per output from the output's
  seed, with the drawn parameters recorded (what `expand` does for each variant);
- the same Sequential written by hand in imgaug, seeded once, one image per call;
- the same, reseeded with `seed_` before each image (what per-output seeding costs);
- the same, one call per batch of 32 images (imgaug's own fast path);
- about the same on augment's albumentations engine (benchmarks/imgaug_engine.yaml lists
  the differences).

Pixel work only: decoding, encoding and writing are the same for every engine. The best of
`--repeats` runs, in milliseconds per output.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import imgaug.augmenters as iaa
import numpy as np

from augment.imaging.codec import decode
from augment.recipe.build import Recipe, load_recipe, seed_pipeline
from augment.recipe.preprocess import apply_preprocess

HERE = Path(__file__).resolve().parent
TEXTURES = HERE.parent / "sample_data" / "textures"


def hand_written() -> iaa.Sequential:
    """imgaug's classic example as its users write it (pipelines/imgaug-seed.yaml)."""
    return iaa.Sequential(
        [
            iaa.Fliplr(0.5),
            iaa.Crop(percent=(0, 0.1)),
            iaa.Sometimes(0.5, iaa.GaussianBlur(sigma=(0, 0.5))),
            iaa.LinearContrast((0.75, 1.5)),
            iaa.AdditiveGaussianNoise(loc=0, scale=(0.0, 0.05 * 255), per_channel=0.5),
            iaa.Multiply((0.8, 1.2), per_channel=0.2),
            iaa.Affine(
                scale={"x": (0.8, 1.2), "y": (0.8, 1.2)},
                translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                rotate=(-25, 25),
                shear=(-8, 8),
            ),
        ],
        random_order=True,
    )


def images(recipe: Recipe) -> list[np.ndarray]:
    paths = sorted(p for p in TEXTURES.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    return [
        apply_preprocess(decode(p.read_bytes(), recipe.background).pixels, recipe.preprocess)
        for p in paths
    ]


def through_engine(recipe: Recipe, inputs: list[np.ndarray], outputs: int) -> None:
    pipeline = recipe.build_pipeline()
    for i in range(outputs):
        seed_pipeline(pipeline, i)
        pipeline(image=inputs[i % len(inputs)].copy())


def by_hand(inputs: list[np.ndarray], outputs: int, seed_each: bool = False) -> None:
    seq = hand_written()
    seq.seed_(0)
    for i in range(outputs):
        if seed_each:
            seq.seed_(i)
        seq(image=inputs[i % len(inputs)])


def by_hand_batched(inputs: list[np.ndarray], outputs: int, batch: int = 32) -> None:
    seq = hand_written()
    seq.seed_(0)
    for start in range(0, outputs, batch):
        seq(images=[inputs[i % len(inputs)] for i in range(start, min(outputs, start + batch))])


def best_ms(run: Callable[[], None], outputs: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outputs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    seed_recipe = load_recipe("imgaug-seed")
    albumentations_recipe = load_recipe(str(HERE / "imgaug_engine.yaml"))
    inputs = images(seed_recipe)
    n, r = args.outputs, args.repeats
    same = albumentations_recipe
    rows: list[tuple[str, Callable[[], None]]] = [
        ("imgaug-seed, augment's imgaug engine", lambda: through_engine(seed_recipe, inputs, n)),
        ("hand-written imgaug, one image a call", lambda: by_hand(inputs, n)),
        ("hand-written imgaug, seed_ per image", lambda: by_hand(inputs, n, seed_each=True)),
        ("hand-written imgaug, batches of 32", lambda: by_hand_batched(inputs, n)),
        ("same, augment's albumentations engine", lambda: through_engine(same, inputs, n)),
    ]
    print(f"{n} outputs of {inputs[0].shape[1]}x{inputs[0].shape[0]}, best of {r}\n")
    print("| pipeline | ms per output |\n|---|---:|")
    for name, run in rows:
        print(f"| {name} | {best_ms(run, n, r):.2f} |")


if __name__ == "__main__":
    main()
