"""Per-class transform policy: a transform forbidden for a class never fires on it (a
flipped 9 is a 6), the policy is recorded, and a policy naming an unknown class fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.errors import RecipeError
from augment.model import ExpandOptions
from augment.recipe.build import parse_recipe
from augment.run import expand
from tests.helpers import DIGITS

POLICY = """\
description: flips with a per-class policy, for tests
preprocess: {size: [24, 16], fit: stretch}
augment:
  - HorizontalFlip: {p: 0.5, except_classes: [6, 9]}
  - VerticalFlip: {p: 0.5, only_classes: [a]}
"""


def asymmetric_dataset(root: Path) -> dict[str, np.ndarray]:
    """Three classes of 24x16 images that differ from every flip of themselves."""
    rng = np.random.default_rng(0)
    images = {}
    for label in ("6", "9", "a"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
            pixels[:, :4] = 255  # a bright left edge
            pixels[:3, :] = 0  # a dark top edge
            Image.fromarray(pixels).save(root / label / f"{label}_{i}.png")
            images[f"{label}/{label}_{i}.png"] = pixels
    return images


def test_forbidden_transform_never_fires_for_its_class(tmp_path: Path) -> None:
    images = asymmetric_dataset(tmp_path / "src")
    recipe = tmp_path / "policy.yaml"
    recipe.write_text(POLICY)
    out = tmp_path / "out"
    expand(
        tmp_path / "src",
        out,
        ExpandOptions(times=21, recipe=str(recipe), val=0, test=0, workers=2, output_format="png"),
    )
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    seen: dict[str, set[str]] = {"6": set(), "9": set(), "a": set()}
    for r in records:
        original = images[r["sources"][0]["path"]]
        pixels = np.asarray(Image.open(out / r["path"]))
        looks = {
            "original": original,
            "hflip": original[:, ::-1],
            "vflip": original[::-1],
            "both": original[::-1, ::-1],
        }
        match = [name for name, candidate in looks.items() if np.array_equal(pixels, candidate)]
        assert len(match) == 1
        seen[r["label"]].add(match[0])
        names = [p["transform"] for p in r["params"]]
        if r["label"] in ("6", "9") and r["variant"]:
            assert r["params"][0] == {
                "transform": "ClassPolicy",
                "label": r["label"],
                "removed": ["HorizontalFlip", "VerticalFlip"],
            }
            assert "HorizontalFlip" not in names and "VerticalFlip" not in names
    # 3 originals x 20 variants each: 6 and 9 are never flipped; `a` gets every flip.
    assert seen["6"] == seen["9"] == {"original"}
    assert seen["a"] == {"original", "hflip", "vflip", "both"}


def test_policy_is_part_of_the_fingerprint() -> None:
    plain = parse_recipe(POLICY.replace(", except_classes: [6, 9]", ""), "p", "p.yaml")
    policed = parse_recipe(POLICY, "p", "p.yaml")
    spelled = parse_recipe(POLICY.replace("[6, 9]", "['9', '6']"), "p", "p.yaml")
    assert plain.fingerprint("png", 95) != policed.fingerprint("png", 95)
    assert spelled.fingerprint("png", 95) == policed.fingerprint("png", 95)


def test_policy_inside_a_composition() -> None:
    recipe = parse_recipe(
        """\
preprocess: {size: [16, 16]}
augment:
  - OneOf:
      transforms:
        - HorizontalFlip: {except_classes: [9]}
        - VerticalFlip: {only_classes: [car]}
      p: 1
""",
        "p",
        "p.yaml",
    )
    assert recipe.removed_for("9") == ["HorizontalFlip", "VerticalFlip"]
    assert recipe.removed_for("car") == []
    nine = recipe.build_pipeline("9")
    assert nine.transforms == []  # the OneOf had nothing left for a 9, so it is gone
    assert [type(t).__name__ for t in recipe.build_pipeline("car").transforms[0].transforms] == [
        "HorizontalFlip",
        "VerticalFlip",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("{p: 0.5, only_classes: [a], except_classes: [b]}", "not both"),
        ("{p: 0.5, except_classes: []}", "non-empty list"),
        ("{p: 0.5, except_classes: [{x: 1}]}", "is not a class name"),
    ],
)
def test_bad_policy_fails_at_load(args: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(f"augment:\n  - HorizontalFlip: {args}\n", "p", "p.yaml")


def test_unknown_class_in_policy_is_an_error(tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(POLICY.replace("[6, 9]", "[6, 99]").replace("[a]", "[1]"))
    with pytest.raises(RecipeError, match=r"names class '99'.*did you mean '9'"):
        expand(DIGITS, tmp_path / "out", ExpandOptions(times=2, recipe=str(recipe), workers=1))
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(
        main, ["expand", str(DIGITS), str(tmp_path / "o"), "-r", str(recipe)]
    )
    assert result.exit_code == 2 and "names class '99'" in result.output
