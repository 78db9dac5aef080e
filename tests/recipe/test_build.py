"""Recipes load, validate at load time with useful messages, and fingerprint exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from augment.errors import RecipeError
from augment.recipe.build import load_recipe, parse_recipe
from augment.recipe.source import bundled_recipes

BASE = """\
description: test
preprocess: {size: [64, 64], fit: pad, pad_mode: reflect}
augment:
  - HorizontalFlip: {p: 0.5}
  - Affine: {rotate: [-10, 10], border_mode: reflect, p: 0.7}
"""


def test_bundled_recipes_load() -> None:
    names = set(bundled_recipes())
    assert {"default", "no-flip", "aggressive"} <= names
    for name in names:
        if name.startswith("imgaug-") and importlib.util.find_spec("imgaug") is None:
            # An imgaug recipe needs the imgaug extra; without it, loading says how to get it.
            with pytest.raises(RecipeError, match=r"pip install \"augment\[imgaug\]\""):
                load_recipe(name)
            continue
        recipe = load_recipe(name)
        assert recipe.description
        recipe.build_pipeline()


def test_no_flip_recipe_has_no_flip() -> None:
    text = str(load_recipe("no-flip").augment)
    assert "Flip" not in text and "Transpose" not in text


def test_unknown_transform_names_it_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BASE.replace("HorizontalFlip", "HorizontalFlipp"))
    with pytest.raises(RecipeError) as err:
        load_recipe(str(path))
    assert "HorizontalFlipp" in str(err.value) and str(path) in str(err.value)
    assert "did you mean 'HorizontalFlip'" in str(err.value)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("rotate: [-10, 10]", "rotat"),  # unknown argument
        ("rotate: [-10, 10], p: 7", "p"),  # invalid value
        ("rotate: [-10, 10], border_mode: bouncy", "bouncy"),
    ],
)
def test_bad_arguments_fail_at_load(bad: str, named: str) -> None:
    text = BASE.replace("rotate: [-10, 10], border_mode: reflect, p: 0.7", bad)
    if named == "rotat":
        text = text.replace("rotate:", "rotat:")
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "r", "r.yaml")
    assert "Affine" in str(err.value) and named in str(err.value)


def test_bad_preprocess_and_unknown_keys() -> None:
    with pytest.raises(RecipeError, match="pad_mode"):
        parse_recipe(BASE.replace("pad_mode: reflect", "pad_mode: mirror"), "r", "r.yaml")
    with pytest.raises(RecipeError, match="augmnet"):
        parse_recipe(BASE.replace("augment:", "augmnet:"), "r", "r.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        parse_recipe("augment: [", "r", "r.yaml")


def test_fingerprint_ignores_cosmetic_changes() -> None:
    a = parse_recipe(BASE, "a", "a.yaml")
    cosmetic = "# a comment\n" + BASE.replace("{p: 0.5}", "{p: 0.5, }").replace(
        "rotate: [-10, 10], border_mode: reflect, p: 0.7",
        "p: 0.7, border_mode: reflect, rotate: [-10, 10], shear: 0",
    ).replace("description: test", "description: renamed")
    b = parse_recipe(cosmetic, "b", "b.yaml")
    assert a.fingerprint("jpg", 95) == b.fingerprint("jpg", 95)


def test_fingerprint_changes_with_pixels() -> None:
    a = parse_recipe(BASE, "a", "a.yaml")
    b = parse_recipe(BASE.replace("[-10, 10]", "[-11, 10]"), "b", "b.yaml")
    c = parse_recipe(BASE.replace("[64, 64]", "[64, 65]"), "c", "c.yaml")
    assert a.fingerprint("jpg", 95) != b.fingerprint("jpg", 95)
    assert a.preprocess_fingerprint("jpg", 95) == b.preprocess_fingerprint("jpg", 95)
    assert a.preprocess_fingerprint("jpg", 95) != c.preprocess_fingerprint("jpg", 95)
    assert a.fingerprint("jpg", 95) != a.fingerprint("jpg", 90)
    assert a.fingerprint("jpg", 95) != a.fingerprint("png", 95)


def test_albumentations_dict_form_is_accepted() -> None:
    import albumentations as A

    a = parse_recipe(BASE, "a", "a.yaml")
    import yaml

    as_dict = yaml.safe_dump(
        {
            "preprocess": {"size": [64, 64], "fit": "pad", "pad_mode": "reflect"},
            "augment": A.to_dict(a.build_pipeline()),
        }
    )
    b = parse_recipe(as_dict, "b", "b.yaml")
    assert a.fingerprint("jpg", 95) == b.fingerprint("jpg", 95)
