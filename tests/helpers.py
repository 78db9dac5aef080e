"""What the test modules share: the sample data's paths, a small recipe, and helpers to run
the tool and to compare output trees. Test modules import from here, never from each other;
fixtures live in conftest.py. The fault-file makers live beside this in tests/faults.py."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from augment.model import ExpandOptions
from augment.stages.holdout import assign_splits
from augment.stages.ingest import ingest

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
TEXTURES = SAMPLE / "textures"
DIGITS = SAMPLE / "digits"

# The default recipe's transforms at a small size, so end-to-end tests stay quick.
SMALL_RECIPE = """\
description: default transforms at 64x48, for tests
preprocess:
  size: [64, 48]
  fit: pad
  pad_mode: blur
augment:
  - HorizontalFlip: {p: 0.5}
  - Affine: {rotate: [-12, 12], scale: [0.9, 1.1], border_mode: reflect, p: 0.7}
  - RandomBrightnessContrast: {p: 0.6}
  - FastGaussianNoise: {sigma: [4, 12], p: 0.3}
  - CoarseDropout: {num_holes_range: [1, 3], p: 0.3}
"""

# Near-duplicate pairs made from the textures set (see tests/stages/test_duplicates.py):
# a half-size re-encoded copy and a mirrored copy of two photos.
RESIZED = "brick/brick_03_small.jpg"
MIRRORED = "grass/grass_07_mirror.png"
PAIRS = [("brick/brick_03.jpg", RESIZED), ("grass/grass_07.jpg", MIRRORED)]


def augment_command(*args: str) -> list[str]:
    """`augment ARGS` as a new process of this interpreter: the tool as a user runs it,
    whichever environment the tests run in."""
    return [sys.executable, "-m", "augment", *args]


def file_tree(root: Path) -> dict[str, bytes]:
    """Every file under root (hidden state excluded) with its bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def small_run(recipe: Path, **changes: object) -> ExpandOptions:
    """The run the rerun tests repeat: 3 variants per original, in one worker process."""
    return ExpandOptions(**{"times": 3, "recipe": str(recipe), "workers": 1, **changes})  # type: ignore[arg-type]


def manifest_by_path(out: Path) -> dict[str, dict]:
    """OUT's manifest records, by output path."""
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


def every_file(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under root, hidden state included: (mtime_ns, inode, bytes)."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def straddling_seed(src: Path) -> int:
    """A seed under which plain holdout (no grouping) puts the resized pair in two splits."""
    originals = ingest(src).originals
    for seed in range(200):
        split_of = assign_splits(originals, 0.2, 0.1, seed).split_of
        if split_of[PAIRS[0][0]] != split_of[PAIRS[0][1]]:
            return seed
    raise AssertionError("no seed splits the pair")  # pragma: no cover


def source_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root, hidden ones too, as the source guarantee covers it: its mode,
    mtime and bytes (a file), target (a link) or nothing more (a folder); faults.tree_state
    has the content and links only. Equal before and after a command: the command wrote
    nothing there, not even a timestamp."""
    found: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            found[rel] = (st.st_mode, str(p.readlink()))
        elif not p.is_file():  # a folder, FIFO, device or socket: never read here
            found[rel] = (st.st_mode, st.st_mtime_ns)
        else:
            # A huge (sparse) file by its ctime, which any write moves, not by its bytes.
            huge = st.st_size > 1 << 30
            found[rel] = (st.st_mode, st.st_mtime_ns, st.st_ctime_ns if huge else p.read_bytes())
    return found


def tiny_source(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 4) -> Path:
    """A class-folder source of small, distinct PNG images (made with Pillow), mtimes set
    in the past so that their stamps are trusted on a rerun."""
    import os

    import numpy as np
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / name / f"{i}.png"
            # Noise from a seed per image: no two are near duplicates. Uncompressed: every
            # image has one byte length (an in-place edit test swaps contents).
            pixels = np.random.default_rng(100 * c + i).integers(0, 256, (16, 24, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(path, compress_level=0)
            os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return root


# --- Annotated sets (detection): scenes drawn on a real photo, in YOLO or COCO layout ----

DETECTION = SAMPLE / "detection_yolo"
# Pure colours no grey background pixel comes near: an object's pixels are found by colour.
OBJECT_COLOURS = {"magenta": (255, 0, 255), "green": (0, 255, 0), "blue": (0, 0, 255)}
Box = tuple[int, int, int, int]


def scene_pixels(width: int, height: int, objects: list[tuple[str, Box]], seed: int) -> bytes:
    """A PNG: a crop of scikit-image's camera photo (grey, so R = G = B), with each object a
    filled rectangle of its class's colour; its box is exact by construction."""
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    camera = data.camera()
    y0, x0 = (seed * 37) % (camera.shape[0] - height), (seed * 53) % (camera.shape[1] - width)
    grey = camera[y0 : y0 + height, x0 : x0 + width]
    pixels = np.repeat(grey[..., None], 3, axis=2)
    for label, (bx0, by0, bx1, by1) in objects:
        pixels[by0:by1, bx0:bx1] = OBJECT_COLOURS[label]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


Scene = tuple[str, int, int, list[tuple[str, Box]]]  # stem, width, height, objects


def scenes(count: int, negatives: int = 1) -> list[Scene]:
    """`count` scenes of 96-128 x 80-104 pixels with 1-3 objects of distinct classes, well
    inside the image; the last `negatives` have none."""
    made: list[Scene] = []
    names = list(OBJECT_COLOURS)
    for i in range(count):
        width, height = 96 + (i * 8) % 40, 80 + (i * 6) % 30
        objects: list[tuple[str, Box]] = []
        if i < count - negatives:
            for j in range(1 + i % 3):
                x, y = 14 + j * 26, 18 + (i * 5 + j * 9) % 30
                objects.append((names[(i + j) % 3], (x, y, x + 14 + j * 3, y + 12 + i % 7)))
        made.append((f"scene_{i:02d}", width, height, objects))
    return made


def settled(root: Path) -> Path:
    """Every file under root dated well in the past, as a dataset a user runs on is: a file
    written within two seconds of a run is "racy" (augment/rerun/state.py) and read again by
    the next run, which then records its stamp: a no-op rerun's state.json would change."""
    import os

    past = 1_600_000_000_000_000_000
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(past, past))
    return root


def write_yolo(root: Path, made: list[Scene], split_of: dict[str, str] | None = None) -> Path:
    """The scenes as a YOLO dataset (images/, labels/, data.yaml); `split_of` (stem -> train
    or val) makes it pre-split under images/<split>/."""
    names = list(OBJECT_COLOURS)
    for i, (stem, width, height, objects) in enumerate(made):
        sub = f"{split_of[stem]}/" if split_of else ""
        image = root / "images" / f"{sub}{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(scene_pixels(width, height, objects, i))
        lines = [
            f"{names.index(label)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}\n"
            for label, (x0, y0, x1, y1) in objects
        ]
        label_file = root / "labels" / f"{sub}{stem}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(lines))
    (root / "data.yaml").write_text("names: [" + ", ".join(names) + "]\n")
    return settled(root)


def write_coco(root: Path, made: list[Scene], polygons: bool = True) -> Path:
    """The scenes as a COCO dataset: annotations/instances.json and images/ beside it; each
    object's outline is its rectangle as a polygon."""
    names = list(OBJECT_COLOURS)
    doc: dict = {"images": [], "annotations": [], "categories": []}
    doc["categories"] = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    for i, (stem, width, height, objects) in enumerate(made):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"{stem}.png").write_bytes(scene_pixels(width, height, objects, i))
        doc["images"].append({"id": i + 1, "file_name": f"{stem}.png", "width": width,
                              "height": height})  # fmt: skip
        for label, (x0, y0, x1, y1) in objects:
            ann = {"id": len(doc["annotations"]) + 1, "image_id": i + 1,
                   "category_id": names.index(label) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                   "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}  # fmt: skip
            if polygons:
                ann["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            doc["annotations"].append(ann)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances.json").write_text(json.dumps(doc))
    return settled(root)


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, background first."""
    import numpy as np

    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = [0, *changes.tolist(), flat.size]
    runs = np.diff(edges).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def shaped_coco(root: Path, made: list[Scene] | None = None, crowd: bool = True) -> Path:
    """write_coco's scenes where every third object is a crowd region given as RLE
    (compressed and uncompressed in turn; without `crowd`, single objects given as RLE, as
    copy-paste may take them) and every third, offset by one, has a two-part outline (its
    rectangle's left and right halves)."""
    import numpy as np

    src = write_coco(root, scenes(12) if made is None else made)
    path = src / "annotations" / "instances.json"
    doc = json.loads(path.read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in doc["images"]}
    for n, ann in enumerate(doc["annotations"]):
        x, y, w, h = ann["bbox"]
        width, height = sizes[ann["image_id"]]
        if n % 3 == 0:
            mask = np.zeros((height, width), np.uint8)
            mask[y : y + h, x : x + w] = 1
            if n % 2 == 0:
                from pycocotools import mask as coco_mask

                rle = coco_mask.encode(np.asfortranarray(mask))
                seg = {"size": [height, width], "counts": rle["counts"].decode()}
            else:
                seg = {"size": [height, width], "counts": uncompressed_counts(mask)}
            ann["segmentation"], ann["iscrowd"] = seg, int(crowd)
        elif n % 3 == 1:
            mid = x + w // 2
            ann["segmentation"] = [
                [x, y, mid, y, mid, y + h, x, y + h],
                [mid, y, x + w, y, x + w, y + h, mid, y + h],
            ]
    path.write_text(json.dumps(doc))
    return settled(src)


# Geometry only (no colour change), nearest-neighbour, so objects keep their exact colour.
# The padding is the preprocess's (every source is 96-128 x 80-104, fitted into 128x112) and
# the Affine's constant border (its scale goes below 1).
GEOMETRIC_RECIPE = """\
description: flips, affine and padding, nearest-neighbour (the geometric test)
preprocess:
  size: [128, 112]
  fit: pad
  pad_mode: constant
  interpolation: nearest
augment:
  - HorizontalFlip: {p: 0.5}
  - VerticalFlip: {p: 0.5}
  - Affine:
      rotate: [-30, 30]
      scale: [0.8, 1.2]
      translate_percent: [-0.08, 0.08]
      interpolation: 0
      border_mode: constant
      p: 1.0
"""


def write_voc(root: Path, made: list[Scene]) -> Path:
    """The scenes as a Pascal VOC dataset: JPEGImages/ (PNG files, as VOC tools accept) and
    Annotations/<stem>.xml with 1-based inclusive boxes; negatives have no XML."""
    for i, (stem, width, height, objects) in enumerate(made):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages" / f"{stem}.png").write_bytes(scene_pixels(width, height, objects, i))
        if not objects:
            continue
        parts = [f"<annotation><filename>{stem}.png</filename><size><width>{width}</width>"
                 f"<height>{height}</height><depth>3</depth></size>"]  # fmt: skip
        for label, (x0, y0, x1, y1) in objects:
            parts.append(
                f"<object><name>{label}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            )
        (root / "Annotations" / f"{stem}.xml").write_text("".join(parts) + "</annotation>\n")
    return settled(root)


def write_masks(root: Path, made: list[Scene], classes: bool = True) -> Path:
    """The scenes as a semantic segmentation set: images/ and masks/ (class ids: 0 the
    background, then the OBJECT_COLOURS in order) and, with `classes`, classes.txt."""
    import io

    import numpy as np
    from PIL import Image

    names = list(OBJECT_COLOURS)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (stem, width, height, objects) in enumerate(made):
        (root / "images" / f"{stem}.png").write_bytes(scene_pixels(width, height, objects, i))
        ids = np.zeros((height, width), np.uint8)
        for label, (x0, y0, x1, y1) in objects:
            ids[y0:y1, x0:x1] = names.index(label) + 1
        buffer = io.BytesIO()
        Image.fromarray(ids, "L").save(buffer, format="PNG")
        (root / "masks" / f"{stem}.png").write_bytes(buffer.getvalue())
    if classes:
        (root / "classes.txt").write_text("background\n" + "\n".join(names) + "\n")
    return settled(root)


def boxes_hug_their_colours(pixels: object, annotation: dict, slack: int) -> int:
    """For an output of objects drawn in OBJECT_COLOURS: every box of the record's
    `annotation` holds its class's colour reaching to within `slack` pixels of each side,
    and every pixel of a class's colour lies in one of its boxes (grown by a pixel) unless
    the record says an object of that class was dropped. Returns the boxes checked."""
    import numpy as np

    image = np.asarray(pixels)
    checked = 0
    for label, colour in OBJECT_COLOURS.items():
        found = np.all(np.abs(image.astype(int) - colour) <= 8, axis=2)
        covered = np.zeros_like(found)
        for o in annotation["objects"]:
            if o["label"] != label:
                continue
            x0, y0, x1, y1 = o["box"]
            ix0, iy0, ix1, iy1 = int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
            covered[max(iy0 - 1, 0) : iy1 + 1, max(ix0 - 1, 0) : ix1 + 1] = True
            ys, xs = np.nonzero(found[iy0:iy1, ix0:ix1])
            assert len(xs), o
            assert xs.min() <= slack and (ix1 - ix0) - (xs.max() + 1) <= slack, o
            assert ys.min() <= slack and (iy1 - iy0) - (ys.max() + 1) <= slack, o
            checked += 1
        if label not in annotation["dropped"]:
            assert not (found & ~covered).any(), label
    return checked


# The loopback S3 server's (tests/conftest.py, s3_bucket): any credentials do; moto refuses
# us-east-1 as an explicit bucket location, which s3fs sends.
S3_REGION = "eu-west-1"
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": S3_REGION,
}


class StoreRequests(logging.Handler):
    """The HTTP requests the loopback S3 server answers, from its request log: the writes a
    run makes, counted where they arrive (PUT, POST and DELETE lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # werkzeug colours some lines (DELETE, errors) for a terminal.
        self.lines.append(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()))

    def of(self, method: str) -> list[str]:
        return [line for line in self.lines if f'"{method} ' in line]

    def writes(self) -> list[str]:
        return [line for m in WRITE_METHODS for line in self.of(m)]

    def __enter__(self) -> StoreRequests:
        logging.getLogger("werkzeug").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("werkzeug").removeHandler(self)


WRITE_METHODS = ("PUT", "POST", "DELETE")


def upload(local: Path, url: str) -> None:
    """Copy a local folder's files to a store prefix, with the same relative paths."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            key = f"{root}/{path.relative_to(local).as_posix()}"
            if fs.protocol == "file" or "file" in fs.protocol:  # folders are real there
                fs.makedirs(fs._parent(key), exist_ok=True)
            fs.pipe_file(key, path.read_bytes())


def peak_rss_of(*args: str, timeout: float = 300) -> int:
    """`augment ARGS`'s peak RSS in bytes (its largest process), measured by a parent of its
    own: RUSAGE_CHILDREN of a test process would count every child it ever had."""
    import subprocess

    measure = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, *augment_command(*args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=True,
    )
    code, kb = done.stdout.split()
    assert code == "0", done.stdout
    return int(kb) * 1024


def benchmark_script(name: str) -> ModuleType:
    """`benchmarks/NAME.py` as a module (the benchmarks are scripts, not a package); kept in
    `sys.modules` under NAME, as the scripts import each other (`from bench import ...`)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def as_from_a_terminal() -> None:
    """`preexec_fn` of a command a test stops with a signal: Ctrl-C and a hang-up at their
    default actions, as a terminal's job has them. A test run started in a script's background
    (`pytest &`: SIGINT ignored) or under nohup (SIGHUP ignored) would hand the ignored signals
    down, and the tool rightly keeps an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
