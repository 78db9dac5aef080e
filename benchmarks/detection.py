"""How fast is `augment expand` on a detection set, next to the same images as a
classification set and a bare albumentations `BboxParams` loop? Milliseconds per output.

    python benchmarks/detection.py            # ~2 minutes; prints a markdown table
    python benchmarks/detection.py --sources 40 --repeats 2

The corpus is made at run time: the crops of scikit-image's photos that benchmarks/bench.py
makes (500x375 JPEG quality 90), each with 1-4 random boxes (a YOLO set; the boxes mark no
real object, which changes no cost). The same files are also laid out as class folders for
the classification run. Every contender makes `--times` outputs per source at the recipe's
size (pipelines/detection.yaml: 320x240, constant pad) and writes them to disk:

- bare BboxParams loop: what a user would write with albumentations alone: cv2 decode,
  LongestMaxSize + PadIfNeeded with the boxes, the recipe's transforms (GaussNoise for the
  project's FastGaussianNoise) under `BboxParams(format="pascal_voc", min_visibility=0.25,
  min_area=4, clip=True)`, cv2 encode, a YOLO label file per output;
- augment expand, classification (class folders; no boxes), 1 worker;
- augment expand, detection (YOLO set; boxes moved, label files and data.yaml), 1 worker;
- the same with `mix: [Mosaic: {p: 1.0}]`: every variant a mosaic of four sources, each
  augmented on its own (so about four augmentations per variant output);
- the same set with each box also written as its outline (a YOLO polygon line), plain and
  with `mix: [CopyPaste: {p: 1.0}]` (up to three instances of a second source pasted onto
  every variant; the partner is preprocessed only), and with `blend: 2` (feathered edges).

Measurements are interleaved over `--repeats` rounds and the medians reported, OpenCV on
one thread, near-duplicate grouping on (as a user runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import make_corpus, stock_transform  # the photos and swaps bench.py uses

from augment.model import ExpandOptions
from augment.recipe.annotated import BOX_RULES
from augment.recipe.build import Recipe, load_recipe
from augment.run import expand

RECIPE = Path(__file__).resolve().parent.parent / "pipelines" / "detection.yaml"


def make_yolo(
    classes_root: Path, yolo_root: Path, seed: int = 0, outlines: bool = False
) -> list[tuple[Path, list]]:
    """The class-folder corpus again as a YOLO set with 1-4 random boxes an image (with
    `outlines`, each box as a polygon line: what copy-paste cuts)."""
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in classes_root.iterdir())
    (yolo_root / "images").mkdir(parents=True)
    (yolo_root / "labels").mkdir()
    made = []
    for path in sorted(classes_root.rglob("*.jpg")):
        boxes = []
        for _ in range(int(rng.integers(1, 5))):
            w, h = rng.uniform(0.05, 0.4, size=2)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            boxes.append((int(rng.integers(len(names))), cx, cy, w, h))
        shutil.copy(path, yolo_root / "images" / path.name)
        lines = "".join(
            f"{c} {x - w / 2:.6f} {y - h / 2:.6f} {x + w / 2:.6f} {y - h / 2:.6f} "
            f"{x + w / 2:.6f} {y + h / 2:.6f} {x - w / 2:.6f} {y + h / 2:.6f}\n"
            if outlines
            else f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
            for c, x, y, w, h in boxes
        )
        (yolo_root / "labels" / f"{path.stem}.txt").write_text(lines)
        made.append((yolo_root / "images" / path.name, boxes))
    (yolo_root / "data.yaml").write_text("names: [" + ", ".join(names) + "]\n")
    return made


def bbox_loop(recipe: Recipe, made: list[tuple[Path, list]], times: int, out: Path) -> None:
    out.mkdir(parents=True)
    width, height = recipe.preprocess.size or (320, 240)
    bbox = A.BboxParams(format="pascal_voc", label_fields=["labels"], **BOX_RULES)
    fit = A.Compose(
        [A.LongestMaxSize(max_size_hw=(height, width)),
         A.PadIfNeeded(height, width, border_mode=cv2.BORDER_CONSTANT, fill=114)],
        bbox_params=bbox,
    )  # fmt: skip
    transforms = [stock_transform(t) for t in recipe.build_pipeline()]
    pipeline = A.Compose(transforms, bbox_params=bbox, seed=0)
    for n, (path, boxes) in enumerate(made):
        image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        ih, iw = image.shape[:2]
        voc = [((x - w / 2) * iw, (y - h / 2) * ih, (x + w / 2) * iw, (y + h / 2) * ih)
               for _, x, y, w, h in boxes]  # fmt: skip
        fitted = fit(image=image, bboxes=voc, labels=[c for c, *_ in boxes])
        for v in range(times):
            done = fitted if v == 0 else pipeline(**fitted)
            ok, data = cv2.imencode(".jpg", done["image"], [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            (out / f"{n}_{v}.jpg").write_bytes(data.tobytes())
            oh, ow = done["image"].shape[:2]
            lines = "".join(
                f"{c} {(x0 + x1) / 2 / ow:.6f} {(y0 + y1) / 2 / oh:.6f} {(x1 - x0) / ow:.6f} "
                f"{(y1 - y0) / oh:.6f}\n"
                for c, (x0, y0, x1, y1) in zip(
                    done["labels"], np.asarray(done["bboxes"]).tolist(), strict=True
                )
            )
            (out / f"{n}_{v}.txt").write_text(lines)


def timed(fn: Callable[[Path], object], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    gc.collect()
    started = time.perf_counter()
    fn(out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=60)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    recipe = load_recipe(str(RECIPE))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        classes = make_corpus(root / "classes", args.sources, (500, 375), 90)
        made = make_yolo(classes, root / "yolo")
        options = ExpandOptions(times=args.times, recipe=str(RECIPE), workers=1, val=0, test=0)
        mosaic_recipe = root / "mosaic.yaml"
        mosaic_recipe.write_text(RECIPE.read_text() + "mix:\n  - Mosaic: {p: 1.0}\n")
        mosaic = dataclasses.replace(options, recipe=str(mosaic_recipe))
        make_yolo(classes, root / "yolo_seg", outlines=True)
        pastes = {}
        for name, args_ in (("paste", "{p: 1.0}"), ("blend", "{p: 1.0, blend: 2}")):
            (root / f"{name}.yaml").write_text(
                RECIPE.read_text() + f"mix:\n  - CopyPaste: {args_}\n"
            )
            pastes[name] = dataclasses.replace(options, recipe=str(root / f"{name}.yaml"))
        seg = root / "yolo_seg"
        contenders: dict[str, Callable[[Path], object]] = {
            "bare albumentations BboxParams loop": lambda o: bbox_loop(recipe, made, args.times, o),
            "augment expand, classification (1 worker)": lambda o: expand(classes, o, options),
            "augment expand, detection (1 worker)": lambda o: expand(root / "yolo", o, options),
            "augment expand, detection, every variant a Mosaic (1 worker)": lambda o: expand(
                root / "yolo", o, mosaic
            ),
            "augment expand, detection with outlines (1 worker)": lambda o: expand(seg, o, options),
            "augment expand, outlines, every variant a CopyPaste (1 worker)": lambda o: expand(
                seg, o, pastes["paste"]
            ),
            "augment expand, outlines, every variant a CopyPaste, blend 2 (1 worker)": (
                lambda o: expand(seg, o, pastes["blend"])
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                seconds[name].append(timed(fn, root / "out"))
    outputs = args.sources * args.times
    print(f"{args.sources} sources x {args.times} outputs, {args.repeats} rounds (medians)\n")
    print("| contender | ms per output |\n|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {1000 * statistics.median(values) / outputs:.2f} |")


if __name__ == "__main__":
    main()
