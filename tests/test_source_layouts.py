"""The data as users bring it: already split (folders or a labels file's `split` column),
labels files with the column names other tools write, reruns that ask for another split,
and the runs that must fail loudly (every image rejected) — all through the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from augment.cli import main
from augment.stages.manifest import read_header, read_manifest
from tests.helpers import DIGITS, SMALL_RECIPE, TEXTURES

# Folder name in SRC -> the output split, in the cases users write them.
SPLIT_FOLDERS = {"Train": "train", "VAL": "validation", "test": "test"}


def presplit(root: Path) -> dict[str, str]:
    """The textures set split by hand into Train/, VAL/ and test/: original path -> split."""
    given = {}
    for class_dir in sorted(p for p in TEXTURES.iterdir() if p.is_dir()):
        files = sorted(f for f in class_dir.iterdir() if f.suffix == ".jpg")
        for i, f in enumerate(files):
            folder = "Train" if i < len(files) - 4 else ("VAL" if i % 2 else "test")
            target = root / folder / class_dir.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            given[f"{folder}/{class_dir.name}/{f.name}"] = SPLIT_FOLDERS[folder]
    return given


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    result = CliRunner().invoke(main, ["expand", *args, "-r", str(recipe), "-n", "2", "-j", "1"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def source_splits(out: Path) -> dict[str, str]:
    """original path -> the split of the outputs made from it."""
    return {s["path"]: r["split"] for r in read_manifest(out) for s in r["sources"]}


def test_split_folders_are_the_split(tmp_path: Path) -> None:
    given = presplit(tmp_path / "src")
    code, stdout, _ = run(tmp_path, str(tmp_path / "src"), str(tmp_path / "out"))
    assert code == 0, stdout
    out = tmp_path / "out"
    assert source_splits(out) == given
    header = read_header(out)
    assert header["source"]["classes"] == sorted(p.name for p in TEXTURES.iterdir() if p.is_dir())
    assert header["options"]["split"] == "source"
    assert "val" not in header["options"] and "test" not in header["options"]
    held_out = [r for r in read_manifest(out) if r["split"] != "train"]
    assert held_out and all(r["variant"] == 0 for r in held_out)  # preprocessed only
    assert "split: the source's own" in stdout


def test_holdout_options_on_a_split_source_are_refused(tmp_path: Path) -> None:
    presplit(tmp_path / "src")
    code, _, stderr = run(tmp_path, str(tmp_path / "src"), str(tmp_path / "out"), "--val", "0.2")
    assert code == 2
    assert "is already split (split folders of class folders:" in stderr
    assert "--val would not be used" in stderr and "--resplit" in stderr
    assert not (tmp_path / "out" / "augment.json").exists()


def test_resplit_pools_a_split_source(tmp_path: Path) -> None:
    given = presplit(tmp_path / "src")
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    code, stdout, _ = run(tmp_path, src, out, "--resplit", "--val", "0.3", "--test", "0")
    assert code == 0, stdout
    splits = source_splits(tmp_path / "out")
    assert set(splits) == set(given) and set(splits.values()) == {"train", "validation"}
    assert splits != given


def test_a_labels_file_split_column_is_the_split(tmp_path: Path) -> None:
    rows, given = ["file_name,class,split"], {}
    for i, f in enumerate(sorted(TEXTURES.glob("*/*.jpg"))):
        split = ("train", "valid", "Test")[i % 3]
        rows.append(f"{f.relative_to(TEXTURES).as_posix()},{f.parent.name},{split}")
        given[f.relative_to(TEXTURES).as_posix()] = {"valid": "validation", "Test": "test"}.get(
            split, split
        )
    rows.append("brick/brick_01.png,brick,holdout")  # not a split name
    shutil.copytree(TEXTURES, tmp_path / "src")
    (tmp_path / "src" / "labels.csv").write_text("\n".join(rows) + "\n")
    code, stdout, stderr = run(tmp_path, str(tmp_path / "src" / "labels.csv"), str(tmp_path / "o"))
    assert code == 0, stdout
    assert source_splits(tmp_path / "o") == given
    assert "split 'holdout' is not one of" in stdout + stderr


def test_labels_file_path_columns_and_absolute_paths(tmp_path: Path) -> None:
    shutil.copytree(DIGITS, tmp_path / "src")
    files = sorted((tmp_path / "src").glob("*/*.png"))
    rows = ["Filename,Label"] + [f"{f},{f.parent.name}" for f in files]  # absolute, inside
    rows.append("/elsewhere/x.png,3")
    (tmp_path / "src" / "labels.csv").write_text("\n".join(rows) + "\n")
    code, stdout, _ = run(tmp_path, str(tmp_path / "src" / "labels.csv"), str(tmp_path / "o"))
    assert code == 0, stdout
    header = read_header(tmp_path / "o")
    assert header["source"]["originals"] == len(files)
    (reason,) = [r["reason"] for r in header["rejected"]]
    assert "absolute path outside the labels file's folder" in reason


def test_a_rerun_asking_for_another_split_stops_and_says_what_is_there(tmp_path: Path) -> None:
    src, out = str(DIGITS), str(tmp_path / "out")
    assert run(tmp_path, src, out, "--seed", "1")[0] == 0
    header = (tmp_path / "out" / "augment.json").read_bytes()
    code, _, stderr = run(tmp_path, src, out, "--seed", "2", "--val", "0.2")
    assert code == 2
    assert "split with --seed 1 --val 0.1 --test 0.1 (" in stderr
    assert "asks for --seed 2 --val 0.2" in stderr and "--resplit" in stderr
    assert (tmp_path / "out" / "augment.json").read_bytes() == header
    assert run(tmp_path, src, out, "--seed", "2", "--val", "0.2", "--resplit")[0] == 0
    options = read_header(tmp_path / "out")["options"]
    assert (options["seed"], options["val"], options["test"]) == (2, 0.2, 0.1)


def _recipe_run(tmp_path: Path, augment: str, *args: str) -> tuple[int, str, str]:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"augment:\n  - {augment}\n")
    command = ["expand", str(DIGITS), str(tmp_path / "o"), "-r", str(recipe), "-j", "1", *args]
    result = CliRunner().invoke(main, command)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("augment", "what", "reason"),
    [
        ("ToFloat: {}", "every train image", "not 8-bit RGB"),
        ("RandomCrop: {height: 500, width: 500, p: 1}", "every train image", "Crop size"),
    ],
)
def test_a_recipe_that_rejects_everything_fails_even_quiet(
    tmp_path: Path, augment: str, what: str, reason: str
) -> None:
    for _ in range(2):  # and again on a rerun, though nothing changed
        code, stdout, stderr = _recipe_run(tmp_path, augment, "-q")
        assert code == 2
        assert f"{what} was rejected" in stderr and reason in stderr
        assert stdout == ""


def test_a_rejection_is_reported_on_stderr_even_quiet(tmp_path: Path) -> None:
    shutil.copytree(DIGITS, tmp_path / "src")
    (tmp_path / "src" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, stdout, stderr = run(tmp_path, str(tmp_path / "src"), str(tmp_path / "o"), "-q")
    assert code == 0 and stdout == ""
    assert "1 input files rejected (first: 3/broken.png: not a readable image" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val", "0.6", "--test", "0.6"], "add up to 1.2: nothing would be left for train"),
        (["--val", "inf"], "must be a finite fraction or count"),
        (["--test", "nan"], "must be a finite fraction or count"),
    ],
)
def test_impossible_holdouts_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    code, stdout, stderr = run(tmp_path, str(DIGITS), str(tmp_path / "o"), *args)
    assert code == 2 and message in stdout + stderr


def test_audit_without_an_argument_says_what_to_give() -> None:
    result = CliRunner().invoke(main, ["audit"])
    assert result.exit_code == 2
    assert "give the output folder to audit (augment audit OUT)" in result.output


def test_a_class_missing_from_a_split_gets_an_empty_folder_and_a_note(tmp_path: Path) -> None:
    """A class of 2 originals stays in train: validation and test get its folder, empty, so
    that loaders numbering the class folders of each split agree."""
    shutil.copytree(DIGITS, tmp_path / "src")
    for extra in sorted((tmp_path / "src" / "7").iterdir())[2:]:
        extra.unlink()
    code, stdout, _ = run(tmp_path, str(tmp_path / "src"), str(tmp_path / "o"))
    assert code == 0, stdout
    out = tmp_path / "o"
    for split in ("validation", "test"):
        assert (out / split / "7").is_dir() and not any((out / split / "7").iterdir())
        assert f"note: {split} has no image of class '7'" in stdout
    assert "allow_empty=True" in stdout
    assert json.loads((out / "classes.json").read_text()) == [str(d) for d in range(10)]


def test_webp_outputs_carry_a_keras_note(tmp_path: Path) -> None:
    code, stdout, _ = run(tmp_path, str(DIGITS), str(tmp_path / "o"), "--format", "webp")
    assert code == 0
    assert "Keras image_dataset_from_directory skips" in stdout


def test_path_and_label_columns_can_be_named(tmp_path: Path) -> None:
    shutil.copytree(DIGITS, tmp_path / "src")
    rows = ["id,img,digit,path"]  # a `path` column that is not the images' (a URL, say)
    for i, f in enumerate(sorted((tmp_path / "src").glob("*/*.png"))):
        rows.append(
            f"{i},{f.relative_to(tmp_path / 'src').as_posix()},{f.parent.name},http://x/{i}"
        )
    (tmp_path / "src" / "labels.csv").write_text("\n".join(rows) + "\n")
    labels = str(tmp_path / "src" / "labels.csv")
    args = ["--path-column", "img", "--label-column", "Digit"]
    code, stdout, _ = run(tmp_path, labels, str(tmp_path / "o"), *args)
    assert code == 0, stdout
    assert read_header(tmp_path / "o")["source"]["originals"] == 60
    code, _, stderr = run(tmp_path, labels, str(tmp_path / "o2"), "--path-column", "image")
    assert code == 2 and "has no column 'image' (--path-column)" in stderr
