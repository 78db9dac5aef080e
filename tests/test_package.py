"""`import augment` as a library: cheap to import, the main calls at the top, paths as str."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

import augment
from tests.helpers import DIGITS, SMALL_RECIPE


def test_import_augment_loads_no_image_library() -> None:
    code = (
        "import sys, augment; "
        "print([m for m in ('numpy', 'cv2', 'PIL', 'albumentations') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_expand_audit_and_inspect_from_the_package_take_str_paths(tmp_path: Path) -> None:
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    out = str(tmp_path / "out")
    options = augment.ExpandOptions(times=2, recipe=str(recipe), workers=1)
    summary = augment.expand(str(DIGITS), out, options)
    assert summary.counts["train"] and Path(out, "augment.json").is_file()
    report = augment.audit_output(out)
    assert report.target == out and report.mode == "manifest"
    assert sum(augment.inspect_source(str(DIGITS)).planned["train"].values()) == 40
    assert "expand" in augment.__all__ and "audit_output" in augment.__all__


@pytest.mark.slow
def test_long_phases_report_as_they_go(tmp_path: Path) -> None:
    """Reading the sources (a first run hashes them as it reads), hashing the new ones on a
    rerun and the audit's decoding each say their total first, then advance to it: the
    command line draws a bar for each (tqdm, once it lasts 1 s)."""
    heard: dict[str, list[int]] = {}

    def phase(name: str, total: int):  # type: ignore[no-untyped-def]
        heard[name] = [total, 0]

        def advance(n: int) -> None:
            heard[name][1] += n

        return advance

    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    src = tmp_path / "digits"
    shutil.copytree(DIGITS, src)
    options = augment.ExpandOptions(times=2, recipe=str(recipe), workers=1)
    augment.expand(src, out, options, phase=phase)
    assert heard == {"reading": [60, 60]}
    first = next(src.glob("*/*.png"))
    ImageOps.flip(Image.open(first)).save(first.with_name("new.png"))
    heard.clear()
    augment.expand(src, out, options, phase=phase)
    assert heard == {"reading": [61, 61], "hashing": [1, 1]}
    augment.audit_output(out, phase=phase)
    outputs = sum(1 for p in out.rglob("*.png"))
    assert heard["decoding"] == [outputs, outputs]


def test_augment_expand_stays_the_function_once_its_module_is_imported() -> None:
    # Importing a submodule sets the package's attribute of that name: a module named
    # augment/run.py would replace the function `augment.expand` with itself.
    import inspect

    import augment.full_run
    import augment.run

    assert inspect.isfunction(augment.expand)
