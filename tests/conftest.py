"""Shared fixtures: the real sample data, small recipes, and one expanded output reused by
the read-only tests (expanding is the slow part)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from augment.expand import expand
from augment.model import ExpandOptions, ExpandSummary

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


@pytest.fixture(scope="session")
def small_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "small.yaml"
    path.write_text(SMALL_RECIPE)
    return path


@pytest.fixture()
def textures_copy(tmp_path: Path) -> Path:
    """A private copy of the textures set, for tests that change the source."""
    dst = tmp_path / "src"
    shutil.copytree(TEXTURES, dst)
    return dst


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


@pytest.fixture(scope="session")
def expanded(
    tmp_path_factory: pytest.TempPathFactory, small_recipe: Path
) -> tuple[Path, ExpandSummary]:
    """sample_data/textures expanded 4x with 2 worker processes (read-only for tests)."""
    out = tmp_path_factory.mktemp("expanded") / "out"
    options = ExpandOptions(times=4, recipe=str(small_recipe), val=0.2, test=0.1, seed=3, workers=2)
    summary = expand(TEXTURES, out, options)
    return out, summary
