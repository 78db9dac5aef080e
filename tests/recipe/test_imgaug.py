"""Recipes on the imgaug engine (`engine: imgaug`, the optional imgaug extra).

The tests that need imgaug skip without the extra (the core environment); the message a user
without it gets is tested in every environment.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from augment.errors import RecipeError
from augment.recipe.build import load_recipe, parse_recipe
from tests.helpers import DIGITS, ROOT, augment_command, file_tree, manifest_by_path

SEED_RECIPE = ROOT / "pipelines" / "imgaug-seed.yaml"

SMALL = """\
description: imgaug at 64x48, for tests
engine: imgaug
preprocess: {size: [64, 48], fit: pad, pad_mode: reflect}
augment:
  - Fliplr: {p: 0.5, except_classes: ["6", "9"]}
  - Sometimes: {p: 0.5, then_list: [GaussianBlur: {sigma: [0, 0.5]}]}
  - LinearContrast: {alpha: [0.75, 1.5]}
  - AdditiveGaussianNoise: {scale: [0, 12.75], per_channel: 0.5}
  - Affine: {rotate: [-10, 10], scale: {x: [0.9, 1.1], y: [0.9, 1.1]}}
  - OneOf: {children: [Cutout: {size: 0.2}, Multiply: {mul: [0.8, 1.2]}]}
"""


@pytest.fixture()
def iaa() -> ModuleType:
    return pytest.importorskip("imgaug.augmenters", reason="needs the imgaug extra")


def _run(*args: str, block_imgaug: bool = False) -> subprocess.CompletedProcess[str]:
    command = augment_command(*args)
    if block_imgaug:  # what a user without the extra sees, also where the extra is installed
        prelude = "import sys; sys.modules['imgaug'] = None; from augment.cli import main; main()"
        command = [sys.executable, "-c", prelude, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_without_the_extra_the_recipe_fails_with_the_install_command(tmp_path: Path) -> None:
    try:
        import imgaug  # noqa: F401

        installed = True
    except ImportError:
        installed = False
    out = tmp_path / "out"
    result = _run(
        "expand", str(DIGITS), str(out), "--recipe", str(SEED_RECIPE), block_imgaug=installed
    )
    assert result.returncode == 2, result.stderr
    assert 'pip install "augment[imgaug]"' in result.stderr
    assert "imgaug-seed.yaml" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_an_albumentations_recipe_never_imports_imgaug(small_recipe: Path) -> None:
    code = (
        "import sys; from augment.recipe.build import load_recipe; "
        f"load_recipe({str(small_recipe)!r}).build_pipeline(); print('imgaug' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_an_unknown_engine_has_a_hint() -> None:
    with pytest.raises(RecipeError, match=r"unknown engine 'imgaugg' \(did you mean 'imgaug'\?\)"):
        parse_recipe(SMALL.replace("engine: imgaug", "engine: imgaugg"), "r", "r.yaml")


def test_the_bundled_seed_recipe_loads(iaa: ModuleType) -> None:
    import imgaug

    recipe = load_recipe("imgaug-seed")
    assert recipe.engine == "imgaug" and recipe.engine_version == imgaug.__version__
    sequential = recipe.augment["transforms"][0]
    assert sequential["random_order"] is True
    names = {c["__class_fullname__"].rsplit(".", 1)[-1] for c in sequential["transforms"]}
    assert {"Fliplr", "Affine", "AdditiveGaussianNoise", "LinearContrast", "Sometimes"} <= names
    assert recipe.to_dict()["engine"] == {"name": "imgaug", "version": imgaug.__version__}


FLIPR = "unknown imgaug augmenter 'Flipr' (did you mean 'Fliplr'?)"
ROTAT = "(Affine): unknown argument 'rotat' (did you mean 'rotate'?)"
SEED = "(Multiply): 'seed' is not a recipe argument"


@pytest.mark.parametrize(
    ("wrong", "right", "message"),
    [
        ("Fliplr: {p: 0.5,", "Flipr: {p: 0.5,", FLIPR),
        ("rotate: [-10, 10]", "rotat: [-10, 10]", ROTAT),
        ("sigma: [0, 0.5]", "sigma: fuzzy", "(GaussianBlur)"),
        ("Multiply: {mul:", "Multiply: {seed: 3, mul:", SEED),
        ("p: 0.5, then_list:", "else_list: [Fliplr], then_list:", "else_list is not supported"),
        ("[Cutout: {size: 0.2}, ", "[", "(OneOf)"),  # fine: one child is enough
    ],
)
def test_mistakes_fail_at_load_naming_file_and_augmenter(
    iaa: ModuleType, wrong: str, right: str, message: str
) -> None:
    text = SMALL.replace(wrong, right)
    assert text != SMALL
    if message == "(OneOf)":
        parse_recipe(text, "r", "r.yaml")
        with pytest.raises(RecipeError, match=r"r\.yaml: augment entry 6 \(OneOf\): needs"):
            parse_recipe(text.replace("[Multiply: {mul: [0.8, 1.2]}]", "[]"), "r", "r.yaml")
        return
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "r", "r.yaml")
    assert str(err.value).startswith("r.yaml: augment entry ") and message in str(err.value)


def test_the_command_names_a_mistake_without_a_traceback(iaa: ModuleType, tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(SMALL.replace("Affine:", "Afine:"))
    result = _run("expand", str(DIGITS), str(tmp_path / "out"), "--recipe", str(recipe))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{recipe}: augment entry 5 (Afine)" in result.stderr
    assert "did you mean 'Affine'?" in result.stderr and not (tmp_path / "out").exists()


def test_fingerprint_covers_engine_version_not_spelled_out_defaults(iaa: ModuleType) -> None:
    recipe = parse_recipe(SMALL, "r", "r.yaml")
    same = parse_recipe(SMALL.replace("per_channel: 0.5}", "per_channel: 0.5, loc: 0}"), "r", "r")
    other = dataclasses.replace(recipe, engine_version="0.4.2")
    changed = parse_recipe(SMALL.replace("[-10, 10]", "[-11, 10]"), "r", "r.yaml")
    assert recipe.fingerprint("jpg", 95) == same.fingerprint("jpg", 95)
    assert recipe.fingerprint("jpg", 95) != other.fingerprint("jpg", 95)
    assert recipe.fingerprint("jpg", 95) != changed.fingerprint("jpg", 95)


def test_seeded_per_output_without_global_state(iaa: ModuleType) -> None:
    import imgaug

    from augment.recipe.build import seed_pipeline

    pipeline = parse_recipe(SMALL, "r", "r.yaml").build_pipeline()
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    made = []
    for seed in (7, 8, 7):
        imgaug.random.seed(seed + 1000)  # the global state must change nothing
        np.random.seed(seed + 2000)
        seed_pipeline(pipeline, seed)
        made.append(pipeline(image=image.copy()))
    assert np.array_equal(made[0]["image"], made[2]["image"])
    assert not np.array_equal(made[0]["image"], made[1]["image"])
    assert made[0]["applied_transforms"] == made[2]["applied_transforms"]
    drawn = dict(made[0]["applied_transforms"])
    assert -10 <= drawn["Affine"]["rotate"] <= 10 and drawn["Fliplr"]["p"] in (0, 1)
    assert 0.75 <= drawn["LinearContrast"]["params1d.0"] <= 1.5


def test_class_policy_removes_the_augmenter(iaa: ModuleType) -> None:
    recipe = parse_recipe(SMALL, "r", "r.yaml")
    assert recipe.removed_for("6") == ["Fliplr"] and recipe.removed_for("1") == []
    flips = [type(a).__name__ for a in recipe.build_pipeline("6").augmenter]
    assert "Fliplr" not in flips and "Fliplr" in [
        type(a).__name__ for a in recipe.build_pipeline("1").augmenter
    ]


def test_workers_1_and_2_write_identical_bytes(iaa: ModuleType, tmp_path: Path) -> None:
    recipe = tmp_path / "small-imgaug.yaml"
    recipe.write_text(SMALL)
    trees = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        args = ("expand", str(DIGITS), str(out), "--times", "3", "--recipe", str(recipe))
        result = _run(*args, "--workers", workers)
        assert result.returncode == 0, result.stderr
        trees.append(file_tree(out))
    assert trees[0] == trees[1] and "manifest.jsonl" in trees[0]
    records = manifest_by_path(tmp_path / "out1").values()
    variants = [r for r in records if r["variant"] > 0]
    assert variants and {r["sha256"] for r in variants}.__len__() == len(variants)
    first = variants[0]["params"]
    assert {"Affine", "LinearContrast", "AdditiveGaussianNoise"} <= {p["transform"] for p in first}
    sixes = [r for r in variants if r["label"] == "6"]
    assert sixes and all(r["params"][0]["transform"] == "ClassPolicy" for r in sixes)
    assert all("Fliplr" not in {p["transform"] for p in r["params"]} for r in sixes)
    header = json.loads((tmp_path / "out1" / "augment.json").read_text())
    assert "imgaug" in json.dumps(header)


def test_a_rerun_sees_another_imgaug(iaa: ModuleType) -> None:
    # The no-op proof trusts the stamps of the files the pixel libraries load from; without
    # imgaug's, an upgraded imgaug would leave the old outputs in place.
    import imgaug

    from augment.rerun.uptodate import library_stamps

    stamps = {entry[0]: entry[1:] for entry in library_stamps()}
    assert stamps["imgaug"][0] == imgaug.__file__ and len(stamps["imgaug"]) == 4
