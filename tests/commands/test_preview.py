"""`augment preview`: a deterministic contact sheet that shows the very pixels expand makes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.commands.preview import CAPTION, HEADER, PAD, PreviewOptions, preview
from augment.expand import expand
from augment.model import ExpandOptions
from tests.helpers import DIGITS, SMALL_RECIPE, TEXTURES

MIXING_RECIPE = SMALL_RECIPE + "mix:\n  - MixUp: {p: 0.3, alpha: 0.4}\n  - CutMix: {p: 0.3}\n"


@pytest.fixture(scope="module")
def mixing_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "mixing.yaml"
    path.write_text(MIXING_RECIPE)
    return path


def test_grid_size_content_and_determinism(small_recipe: Path) -> None:
    options = PreviewOptions(recipe=str(small_recipe), rows=3, variants=2, cell=40, seed=1)
    sheet = preview(TEXTURES, options)
    # 3 rows of (original + 2 variants), each cell 40 px with its caption strip.
    width, height = PAD + 3 * (40 + PAD), HEADER + 3 * (40 + CAPTION + PAD) + PAD
    assert sheet.image.size == (width, height)
    assert [len(row) for row in sheet.rows] == [3, 3, 3]
    assert [[c.variant for c in row] for row in sheet.rows] == [[0, 1, 2]] * 3
    assert len({row[0].label for row in sheet.rows}) == 3  # classes take turns
    pixels = np.asarray(sheet.image)
    blank = np.asarray(Image.new("RGB", sheet.image.size, (255, 255, 255)))
    assert not np.array_equal(pixels, blank)
    for row in sheet.rows:
        for cell in row:
            x0, y0, x1, y1 = cell.box
            assert pixels[y0:y1, x0:x1].std() > 5  # a real image in every cell
    assert preview(TEXTURES, options).png() == sheet.png()
    other = preview(TEXTURES, dataclasses.replace(options, seed=2))
    assert other.png() != sheet.png()


def test_cells_are_the_pixels_expand_writes(tmp_path: Path, mixing_recipe: Path) -> None:
    out = tmp_path / "out"
    expand(
        TEXTURES,
        out,
        ExpandOptions(
            times=4, recipe=str(mixing_recipe), seed=5, val=0.2, workers=1, output_format="png"
        ),
    )
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    by_variant = {(r["sources"][0]["path"], r["variant"]): r for r in records}
    # Cells of 64 px hold the 64x48 images unscaled.
    sheet = preview(
        TEXTURES,
        PreviewOptions(recipe=str(mixing_recipe), rows=5, variants=3, cell=64, seed=5, val=0.2),
    )
    pixels = np.asarray(sheet.image)
    mixed = 0
    for row in sheet.rows:
        for cell in row:
            record = by_variant[(cell.source, cell.variant)]
            assert record["split"] == "train" and record["label"] == cell.label
            mixed += cell.soft_label is not None
            assert cell.soft_label == record.get("soft_label")
            x0, y0, x1, y1 = cell.box
            written = np.asarray(Image.open(out / record["path"]))
            assert np.array_equal(pixels[y0:y1, x0:x1], written)
    assert mixed > 0


def test_validation_preview_shows_held_out_originals_only(
    tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(TEXTURES, out, ExpandOptions(times=1, recipe=str(small_recipe), val=0.2, workers=1))
    held = {
        h["path"]
        for h in json.loads((out / "augment.json").read_text())["holdout"]
        if h["split"] == "validation"
    }
    sheet = preview(
        TEXTURES,
        PreviewOptions(recipe=str(small_recipe), split="validation", rows=6, val=0.2, cell=32),
    )
    assert [len(row) for row in sheet.rows] == [1] * 6
    assert all(row[0].variant == 0 and row[0].source in held for row in sheet.rows)
    assert sheet.image.size == (PAD + 32 + PAD, HEADER + 6 * (32 + CAPTION + PAD) + PAD)


def test_cli_writes_the_png(tmp_path: Path, small_recipe: Path) -> None:
    target = tmp_path / "sheet.png"
    args = ["preview", str(TEXTURES), "-o", str(target), "-r", str(small_recipe), "--rows", "2"]
    result = CliRunner().invoke(main, [*args, "-k", "1", "--cell", "48"])
    assert result.exit_code == 0, result.output
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size == (
            PAD + 2 * (48 + PAD),
            HEADER + 2 * (48 + CAPTION + PAD) + PAD,
        )
    empty = CliRunner().invoke(
        main, ["preview", str(TEXTURES), "-o", str(target), "--split", "test", "--test", "0"]
    )
    assert empty.exit_code == 2 and "no test originals" in empty.output
    jpeg = CliRunner().invoke(main, ["preview", str(TEXTURES), "-o", str(tmp_path / "x.jpg")])
    assert jpeg.exit_code == 2 and "name it *.png" in jpeg.output


def test_preview_of_a_split_source_shows_its_own_validation(tmp_path: Path) -> None:
    """`--split validation` on SRC/train + SRC/val shows the originals of val/."""
    src = tmp_path / "src"
    shutil.copytree(DIGITS, src / "train")
    shutil.copytree(DIGITS / "3", src / "val" / "3")
    options = PreviewOptions(recipe="no-flip", rows=3, variants=0, split="validation")
    sheet = preview(src, options)
    assert sheet.rows and all(row[0].source.startswith("val/3/") for row in sheet.rows)
