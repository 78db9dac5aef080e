"""What the test modules share: the sample data's paths, a small recipe, and helpers to run
the tool and to compare output trees. Test modules import from here, never from each other;
fixtures live in conftest.py. The fault-file makers live beside this in tests/faults.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from augment.model import ExpandOptions
from augment.stages.holdout import assign_splits
from augment.stages.ingest import ingest

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
