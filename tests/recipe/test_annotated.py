"""recipe/annotated.py on real pixels: the preprocess moves boxes exactly as it moves the
pixels (every fit mode), objects the crop cuts away are dropped and counted, a per-class
policy applies to every class on an image, a reflect or wrap pad's copies of the objects are
labelled, and what would make unlabeled objects is refused."""

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


COLOURS = {"m": MAGENTA, "g": (0, 255, 0)}


def _scene(width: int, height: int, boxes: dict[str, tuple[int, int, int, int]]) -> np.ndarray:
    pixels = np.full((height, width, 3), 90, np.uint8)
    for label, (x0, y0, x1, y1) in boxes.items():
        pixels[y0:y1, x0:x1] = COLOURS[label]
    return pixels


# Objects on the edges of a tall, a wide and a small image: a reflect or wrap pad shows them
# again (and again, where the pad is wider than the image) in every border.
EDGE_SCENES = [
    (40, 90, {"m": (0, 10, 12, 40), "g": (30, 60, 40, 90)}),
    (120, 30, {"m": (0, 0, 30, 9), "g": (100, 20, 120, 30)}),
    (20, 16, {"m": (0, 0, 7, 6), "g": (14, 10, 20, 16)}),
]


@pytest.mark.parametrize("pad_mode", ["reflect", "wrap"])
@pytest.mark.parametrize(("width", "height", "boxes"), EDGE_SCENES)
def test_a_mirroring_pad_labels_every_copy_of_an_object(
    pad_mode: str,
    width: int,
    height: int,
    boxes: dict[str, tuple[int, int, int, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every pixel of an object's colour in the padded image lies in a box of its class, and
    every box hugs pixels of its colour: the copies in the border are labelled; each copy's
    RLE mask is exactly its pixels. The box rules are off here (any sliver of a copy is
    kept), to see every copy; the next test holds copies to them."""
    from augment.annotations.shapes import decode_rle, encode_rle
    from augment.recipe import annotated

    monkeypatch.setitem(annotated.BOX_RULES, "min_area", 0.0)
    monkeypatch.setitem(annotated.BOX_RULES, "min_visibility", 0.0)

    spec = Preprocess(width=96, height=72, fit="pad", pad_mode=pad_mode, interpolation="nearest")
    pixels = _scene(width, height, boxes)
    out = apply_preprocess(pixels, spec)
    objects = [
        LabeledObject(label, tuple(map(float, box)), crowd=True,
                      rle=encode_rle(np.all(pixels == COLOURS[label], axis=2)))
        for label, box in boxes.items()
    ]  # fmt: skip
    kept, dropped = preprocess_objects(objects, (width, height), (width, height), spec)
    assert not dropped and len(kept) > len(objects)
    for label, colour in COLOURS.items():
        drawn = np.all(out == colour, axis=2)
        covered = np.zeros_like(drawn)
        masks = np.zeros_like(drawn)
        for o in (o for o in kept if o.label == label):
            x0, y0, x1, y1 = (round(v) for v in o.box)
            inside = drawn[y0:y1, x0:x1]
            ys, xs = np.nonzero(inside)
            assert len(xs), (label, o.box)
            assert xs.min() == 0 and ys.min() == 0, (label, o.box)  # tight
            assert xs.max() + 1 == x1 - x0 and ys.max() + 1 == y1 - y0, (label, o.box)
            covered[y0:y1, x0:x1] = True
            assert o.rle is not None
            mask = decode_rle(o.rle, 96, 72)
            assert not (mask & masks).any()  # each copy its own pixels
            masks |= mask
        assert not (drawn & ~covered).any(), label
        assert (masks == drawn).all(), label


def test_a_copy_the_border_shows_too_little_of_is_not_labelled() -> None:
    """A 1-pixel-wide sliver of a copy (under the box rules' 4 square pixels) gets no box."""
    spec = Preprocess(width=42, height=30, fit="pad", pad_mode="wrap", interpolation="nearest")
    # 40 x 30 fitted, one column of pad on each side: the wrapped copies are 1 pixel wide.
    kept, _ = preprocess_objects(
        [LabeledObject("m", (0.0, 0.0, 3.0, 3.0))], (40, 30), (40, 30), spec
    )
    assert [o.box for o in kept] == [(1.0, 0.0, 4.0, 3.0)]
