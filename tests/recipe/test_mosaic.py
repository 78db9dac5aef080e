"""Mosaic's recipe entry and geometry (the pixels and boxes end to end: tests/test_mosaic.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from augment.errors import RecipeError
from augment.model import LabeledObject
from augment.recipe.build import load_recipe
from augment.recipe.mixing import mosaic_centre
from augment.recipe.mosaic import place_objects, place_tiles
from tests.helpers import DETECTION, augment_command


@pytest.mark.parametrize("arg", ["alpha: 1.0", "other_class: true"])
def test_mosaic_takes_no_mixing_weight_arguments(tmp_path: Path, arg: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"preprocess: {{size: [64, 64]}}\naugment: []\nmix:\n  - Mosaic: {{p: 1, {arg}}}\n"
    )
    with pytest.raises(RecipeError, match=re.escape("Mosaic takes p and a class policy only")):
        load_recipe(str(path))


def test_a_tile_whose_size_an_augment_step_changed_is_placed_with_its_objects() -> None:
    """A tile of 80 x 60 (a crop in augment) is scaled to the output's 40 x 40 before being
    halved: the box goes where its pixels go."""
    tiles = [np.zeros((40, 40, 3), np.uint8) for _ in range(3)]
    odd = np.zeros((60, 80, 3), np.uint8)
    odd[30:60, 40:80] = 255  # the bottom right quarter
    pixels = place_tiles([odd, *tiles], (20, 20), (40, 40), (0, 0, 0))
    ys, xs = np.nonzero(pixels[..., 0])
    kept, dropped = place_objects(
        [[LabeledObject("a", (40.0, 30.0, 80.0, 60.0), (), False)], [], [], []],
        [(80, 60), (40, 40), (40, 40), (40, 40)],
        (20, 20),
        (40, 40),
    )
    assert not dropped
    assert kept[0].box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (10, 10, 20, 20)


def _mosaic_recipe(tmp_path: Path, args: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"preprocess: {{size: [64, 64]}}\naugment: []\nmix:\n  - Mosaic: {{{args}}}\n")
    return path


def test_the_centre_range_is_where_the_centre_is_drawn(tmp_path: Path) -> None:
    (spec,) = load_recipe(str(_mosaic_recipe(tmp_path, "p: 1, centre: [0.4, 0.6]"))).mix
    assert spec.centre == (0.4, 0.6) and spec.to_dict()["centre"] == [0.4, 0.6]
    rng = np.random.default_rng(0)
    centres = [mosaic_centre(rng, 100, 50, spec.centre) for _ in range(200)]
    assert {c[0] for c in centres} == set(range(40, 61))
    assert {c[1] for c in centres} == set(range(20, 31))
    assert mosaic_centre(rng, 128, 112, (0.5, 0.5)) == (64, 56)


def test_the_default_centre_draws_as_before_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    (spec,) = load_recipe(str(_mosaic_recipe(tmp_path, "p: 1"))).mix
    assert "centre" not in spec.to_dict()  # recipes written before the option keep names
    one, two = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(50):
        expected = (int(two.integers(128 // 4, 3 * 128 // 4 + 1)),
                    int(two.integers(112 // 4, 3 * 112 // 4 + 1)))  # fmt: skip
        assert mosaic_centre(one, 128, 112, spec.centre) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("centre: [0.8, 0.2]", "centre must be [lo, hi] with 0 <= lo <= hi <= 1"),
        ("centre: 0.5", "centre must be a range [lo, hi]"),
        ("centr: [0.2, 0.8]", "unknown argument 'centr' (did you mean 'centre'?)"),
    ],
)
def test_a_bad_centre_is_a_clear_error(tmp_path: Path, args: str, message: str) -> None:
    recipe = _mosaic_recipe(tmp_path, f"p: 1, {args}")
    args_ = ["expand", str(DETECTION), str(tmp_path / "out"), "--recipe", str(recipe)]
    result = subprocess.run(augment_command(*args_), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr
