"""Mosaic's recipe entry and geometry (the pixels and boxes end to end: tests/test_mosaic.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from augment.errors import RecipeError
from augment.model import LabeledObject
from augment.recipe.build import load_recipe
from augment.recipe.mosaic import place_objects, place_tiles


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
