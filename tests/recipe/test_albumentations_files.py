"""albumentations' own files are recipes, and `augment` cannot make train another size."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import pytest
from click.testing import CliRunner

from augment.cli import main
from augment.stages.manifest import read_header
from tests.helpers import DIGITS

SAVED = A.Compose(
    [A.HorizontalFlip(p=0.5), A.OneOf([A.Blur(), A.RandomBrightnessContrast()], p=0.5)]
)


@pytest.mark.parametrize("data_format", ["yaml", "json"])
def test_a_file_albumentations_saved_is_the_augment_part(tmp_path: Path, data_format: str) -> None:
    recipe = tmp_path / f"saved.{data_format}"
    A.save(SAVED, str(recipe), data_format=data_format)
    out = tmp_path / "out"
    args = ["expand", str(DIGITS), str(out), "-r", str(recipe), "-n", "2", "-j", "1", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    spec = read_header(out)["recipe"]["spec"]
    names = [t["__class_fullname__"] for t in spec["augment"]["transforms"]]
    assert names == ["HorizontalFlip", "OneOf"]


@pytest.mark.parametrize(
    ("transform", "refused"),
    [
        ("Resize: {height: 100, width: 100}", "Resize to 100x100"),
        ("RandomResizedCrop: {size: [40, 48]}", "RandomResizedCrop to 48x40"),
        ("LongestMaxSize: {max_size: 80}", "LongestMaxSize"),
        ("OneOf: {transforms: [{RandomCrop: {height: 20, width: 20}}]}", "RandomCrop to 20x20"),
        ("RandomResizedCrop: {size: [32, 48]}", None),  # the preprocess size (H, W): kept
    ],
)
def test_a_size_change_in_augment_is_refused(
    tmp_path: Path, transform: str, refused: str | None
) -> None:
    recipe = tmp_path / "sized.yaml"
    recipe.write_text(f"preprocess: {{size: [48, 32]}}\naugment:\n  - {transform}\n")
    out = tmp_path / "out"
    args = ["expand", str(DIGITS), str(out), "-r", str(recipe), "-n", "2", "-j", "1", "-q"]
    result = CliRunner().invoke(main, args)
    if refused is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"augment: {refused} would make train images another size" in result.output
    assert "Set the size in preprocess" in result.output
