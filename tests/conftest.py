"""Shared fixtures: the real sample data, small recipes, and one expanded output reused by
the read-only tests (expanding is the slow part). Shared constants and helpers are in
tests/helpers.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from augment.model import ExpandOptions, ExpandSummary
from augment.run import expand
from tests.helpers import DIGITS, SMALL_RECIPE, TEXTURES


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


@pytest.fixture()
def digits_copy(tmp_path: Path) -> Path:
    """A private copy of the digits set; copy2 keeps the files' (old) mtimes."""
    dst = tmp_path / "src"
    shutil.copytree(DIGITS, dst)
    return dst


@pytest.fixture(scope="session")
def expanded(
    tmp_path_factory: pytest.TempPathFactory, small_recipe: Path
) -> tuple[Path, ExpandSummary]:
    """sample_data/textures expanded 4x with 2 worker processes (read-only for tests)."""
    out = tmp_path_factory.mktemp("expanded") / "out"
    options = ExpandOptions(times=4, recipe=str(small_recipe), val=0.2, test=0.1, seed=3, workers=2)
    summary = expand(TEXTURES, out, options)
    return out, summary
