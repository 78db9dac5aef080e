"""Mosaic's recipe entry and geometry (the pixels and boxes end to end: tests/test_mosaic.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from augment.commands.audit import audit_output
from augment.errors import RecipeError
from augment.model import ExpandOptions, LabeledObject
from augment.recipe.build import load_recipe
from augment.recipe.mixing import mosaic_centre, tile_boxes
from augment.recipe.mosaic import place_objects, place_tiles
from augment.run import expand
from tests.helpers import (
    DETECTION,
    GEOMETRIC_RECIPE,
    augment_command,
    manifest_by_path,
    scenes,
    write_yolo,
)


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
        ("scale: [0.1, 1]", "scale must be [lo, hi] with 0.25 <= lo <= hi <= 2"),
    ],
)
@pytest.mark.slow
def test_a_bad_centre_is_a_clear_error(tmp_path: Path, args: str, message: str) -> None:
    recipe = _mosaic_recipe(tmp_path, f"p: 1, {args}")
    args_ = ["expand", str(DETECTION), str(tmp_path / "out"), "--recipe", str(recipe)]
    result = subprocess.run(augment_command(*args_), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_a_tile_scale_places_each_tile_and_its_objects_at_its_drawn_size() -> None:
    """Four solid tiles in a 40 x 40 output, centre (20, 20), scales 0.5, 1, 1.5, 1: the top
    left tile is 10 x 10, the bottom left 30 x 30 (cut at the output's edge)."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    tiles = [np.full((40, 40, 3), c, np.uint8) for c in colours]
    scales = (0.5, 1.0, 1.5, 1.0)
    pixels = place_tiles(tiles, (20, 20), (40, 40), (0, 0, 0), scales=scales)
    assert (pixels[10:20, 10:20] == colours[0]).all() and (pixels[:10, :20] == 0).all()
    assert (pixels[20:40, 0:20] == colours[2]).all()
    whole = [LabeledObject("a", (0.0, 0.0, 40.0, 40.0), (), False)]
    kept, _ = place_objects([whole] * 4, [(40, 40)] * 4, (20, 20), (40, 40), scales)
    assert [o.box for o in kept] == [
        (10, 10, 20, 20), (20, 0, 40, 20), (0, 20, 20, 40), (20, 20, 40, 40)
    ]  # fmt: skip


def test_the_tile_scale_is_drawn_recorded_and_weighted(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    text = GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0")
    recipe.write_text(text + "mix:\n  - Mosaic: {p: 1.0, scale: [0.5, 1.5]}\n")
    src = write_yolo(tmp_path / "src", scenes(8))
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1)
    expand(src, tmp_path / "out", options)
    mosaics = 0
    for record in manifest_by_path(tmp_path / "out").values():
        entry = next((p for p in record["params"] if p["transform"] == "Mosaic"), None)
        if entry is None:
            continue
        mosaics += 1
        assert len(entry["scales"]) == 4 and all(0.5 <= s <= 1.5 for s in entry["scales"])
        boxes = tile_boxes(tuple(entry["centre"]), (128, 112), entry["scales"])
        areas = [
            max(min(x1, 128) - max(x0, 0), 0) * max(min(y1, 112) - max(y0, 0), 0) / (128 * 112)
            for x0, y0, x1, y1 in boxes
        ]
        assert [s["weight"] for s in record["sources"]] == pytest.approx(areas, abs=1e-4)
    assert mosaics == 8
    checks = {"lineage", "integrity", "annotations"}
    assert not [f for f in audit_output(tmp_path / "out").findings if f.check in checks]


def test_a_tile_s_objects_keep_every_outline_part_and_their_rle_cut_to_the_tile() -> None:
    """A two-part outline keeps both parts, each clipped to what the tile shows (a part
    outside it gone); an RLE mask is placed as a class-id mask would be, pixel for pixel,
    and cut to the tile."""
    from augment.annotations.shapes import decode_rle, encode_rle
    from augment.recipe.mosaic import clip_objects

    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    two = LabeledObject(
        "a", (4.0, 4.0, 32.0, 12.0), (4.0, 4.0, 12.0, 4.0, 12.0, 12.0, 4.0, 12.0),
        more_polygons=((16.0, 4.0, 32.0, 4.0, 32.0, 12.0, 16.0, 12.0),),
    )  # fmt: skip
    outside = LabeledObject(
        "a", (4.0, 20.0, 32.0, 28.0), (4.0, 20.0, 12.0, 20.0, 12.0, 28.0, 4.0, 28.0),
        more_polygons=((24.0, 20.0, 32.0, 20.0, 32.0, 28.0, 24.0, 28.0),),
    )  # fmt: skip
    rle = LabeledObject("b", (10.0, 10.0, 30.0, 30.0), rle=encode_rle(mask))
    kept, dropped = clip_objects(
        [two, outside, rle], (40, 40), (0, 0, 40, 40), (0, 0, 20, 40), (40, 40)
    )
    assert not dropped
    assert kept[0].polygons == ((4, 4, 12, 4, 12, 12, 4, 12), (16, 4, 20, 4, 20, 12, 16, 12))
    assert kept[1].polygons == ((4, 20, 12, 20, 12, 28, 4, 28),)  # its right part is gone
    assert kept[2].rle is not None
    expected = np.zeros((40, 40), bool)
    expected[10:30, 10:20] = True
    assert (decode_rle(kept[2].rle, 40, 40) == expected).all()
    # Scaled into a quadrant as place_tiles scales a mask (nearest-neighbour).
    (half,), _ = clip_objects([rle], (40, 40), (20, 0, 40, 20), (20, 0, 40, 20), (40, 40))
    assert half.rle is not None
    empty = np.zeros((40, 40), np.uint8)
    ids = place_tiles([empty, mask.astype(np.uint8), empty, empty], (20, 20), (40, 40), 0, True)
    assert (decode_rle(half.rle, 40, 40) == (ids > 0)).all()
