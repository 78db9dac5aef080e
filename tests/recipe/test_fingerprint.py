"""The recipe fingerprint (augment/recipe/build.py): what names the outputs."""

from __future__ import annotations

import pytest

import augment.recipe.build as recipe_module
from augment.recipe.build import parse_recipe
from augment.stages.plan import Fingerprints
from tests.helpers import SMALL_RECIPE

FP = Fingerprints(preprocess="p" * 16, recipe="r" * 16)


def test_output_settings_in_the_fingerprint() -> None:
    recipe = parse_recipe(SMALL_RECIPE, "small", "small.yaml")
    # PNG is lossless: quality changes no byte, so no name.
    assert recipe.fingerprint("png", 95) == recipe.fingerprint("png", 50)
    assert recipe.fingerprint("jpg", 95) != recipe.fingerprint("jpg", 50)
    assert recipe.fingerprint("same", 95) != recipe.fingerprint("same", 50)
    assert recipe.fingerprint("webp", 95) != recipe.fingerprint("jpg", 95)


def test_pixel_library_versions_are_in_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = parse_recipe(SMALL_RECIPE, "small", "small.yaml")
    before = (recipe.preprocess_fingerprint("jpg", 95), recipe.fingerprint("jpg", 95))
    monkeypatch.setattr(recipe_module, "PIXEL_VERSION", recipe_module.PIXEL_VERSION + 1)
    after = (recipe.preprocess_fingerprint("jpg", 95), recipe.fingerprint("jpg", 95))
    assert before[0] != after[0] and before[1] != after[1]
    monkeypatch.undo()
    monkeypatch.setattr(recipe_module.A, "__version__", "2.0.999")
    # albumentations makes only the variants: the originals' fingerprint keeps.
    assert recipe.preprocess_fingerprint("jpg", 95) == before[0]
    assert recipe.fingerprint("jpg", 95) != before[1]
