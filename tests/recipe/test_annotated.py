"""recipe/annotated.py on real pixels: the preprocess moves boxes exactly as it moves the
pixels (every fit mode), objects the crop cuts away are dropped and counted, a per-class
policy applies to every class on an image, and mirroring pads or mixes are refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from augment.errors import RecipeError
from augment.model import LabeledObject
from augment.recipe.annotated import check_annotated_recipe, for_classes, preprocess_objects
from augment.recipe.build import load_recipe
from augment.recipe.preprocess import Preprocess, apply_preprocess

MAGENTA = (255, 0, 255)


def _image_with(box: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    pixels = np.full((height, width, 3), 90, np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = MAGENTA
    return pixels


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
@pytest.mark.parametrize(("width", "height"), [(150, 90), (90, 150), (64, 64)])
def test_preprocessed_boxes_hug_the_preprocessed_object(fit: str, width: int, height: int) -> None:
    box = (width // 3, height // 3, width // 3 + 20, height // 3 + 14)
    spec = Preprocess(width=96, height=72, fit=fit, pad_mode="constant", interpolation="nearest")
    out = apply_preprocess(_image_with(box, width, height), spec)
    (obj,), dropped = preprocess_objects(
        [LabeledObject("m", tuple(map(float, box)))], (width, height), (width, height), spec
    )
    assert not dropped
    ys, xs = np.nonzero(np.all(out == MAGENTA, axis=2))
    x0, y0, x1, y1 = obj.box
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1


def test_an_object_the_centre_crop_cuts_away_is_dropped_and_counted() -> None:
    spec = Preprocess(width=64, height=64, fit="crop")
    objects = [
        LabeledObject("edge", (0.0, 10.0, 12.0, 30.0)),  # in the left 25 px the crop removes
        LabeledObject("middle", (40.0, 20.0, 60.0, 40.0)),
    ]
    kept, dropped = preprocess_objects(objects, (100, 50), (100, 50), spec)
    assert [o.label for o in kept] == ["middle"] and dropped == {"edge": 1}


def test_a_policy_applies_to_every_class_on_the_image() -> None:
    spec = {
        "transforms": [
            {"__class_fullname__": "HorizontalFlip", "except_classes": ["six"]},
            {"__class_fullname__": "Blur"},
        ]
    }
    assert [
        t["__class_fullname__"] for t in for_classes(spec, ["cat"], root=True)["transforms"]
    ] == [
        "HorizontalFlip",
        "Blur",
    ]
    kept = for_classes(spec, ["cat", "six"], root=True)["transforms"]
    assert [t["__class_fullname__"] for t in kept] == ["Blur"]


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            "preprocess: {size: [64, 64], fit: pad, pad_mode: blur}\naugment: []\n",
            "pad_mode 'blur'",
        ),
        (
            "augment:\n  - Rotate: {limit: 20, border_mode: wrap}\n",
            "Rotate border_mode 'wrap' mirrors objects",
        ),
    ],
)
def test_what_would_make_unlabeled_objects_is_refused(
    tmp_path: Path, recipe: str, message: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("description: t\n" + recipe)
    with pytest.raises(RecipeError, match=re.escape(message)):
        check_annotated_recipe(load_recipe(str(path)))


@pytest.mark.parametrize("mix", ["Mosaic: {p: 0.5}", "MixUp: {p: 0.5}", "CutMix: {p: 0.5}",
                                 "CopyPaste: {p: 0.5}"])  # fmt: skip
def test_every_mix_is_accepted_for_an_annotated_set(tmp_path: Path, mix: str) -> None:
    """MixUp and CutMix carry boxes (stages/mixed.py): no longer refused."""
    path = tmp_path / "r.yaml"
    path.write_text(f"preprocess: {{size: [64, 64]}}\naugment: []\nmix:\n  - {mix}\n")
    check_annotated_recipe(load_recipe(str(path)))


def test_the_bundled_detection_recipe_is_accepted() -> None:
    recipe_path = Path(__file__).resolve().parents[2] / "pipelines" / "detection.yaml"
    check_annotated_recipe(load_recipe(str(recipe_path)))
