"""The output folder: never the source, never someone else's files, and a failed write (disk
full, permission denied) is a clear message, leaves no partial file, and a rerun recovers.

Disk full is simulated for real with RLIMIT_FSIZE in a child process (writes past the limit
fail with EFBIG, as they fail with ENOSPC on a full disk: same code path). Permission denied
uses a read-only folder; as root, where permission bits do not bind, the child drops
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so that they do (tests/faults.py).
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.files import TEMP_MARK
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.manifest import read_manifest
from tests import faults
from tests.helpers import DIGITS, ROOT, SMALL_RECIPE, augment_command, file_tree


def run_cli(
    args: list[str], preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`augment` in a real child process (its own limits and privileges)."""
    return subprocess.run(
        augment_command(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=preexec,
        timeout=120,
        check=False,
    )


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(f"*{TEMP_MARK}*") if p.is_file()]


def _digits_args(out: Path, recipe: Path, *extra: str) -> list[str]:
    return ["expand", str(DIGITS), str(out), "--times", "3", "-r", str(recipe), *extra]


# --- disk full ---------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    ("limit", "workers"),
    [
        pytest.param(1_000, "2", id="first-image-in-a-worker-process"),
        pytest.param(40_000, "1", id="manifest-after-every-image", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow
def test_disk_full_is_a_clear_error_and_a_rerun_recovers(
    tmp_path: Path, small_recipe: Path, limit: int, workers: str
) -> None:
    out = tmp_path / "out"
    full = run_cli(_digits_args(out, small_recipe, "-j", workers), _file_size_limit(limit))
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    assert "the file size limit was reached" in full.stderr
    assert "rerun the same command to resume" in full.stderr
    assert_no_partial_file(out)
    assert not (out / "manifest.jsonl").exists() and not (out / "augment.json").exists()
    written_before = len(list(out.rglob("*_nohash_*.png")))
    if limit == 40_000:
        assert written_before == 140  # every image was done; only the manifest failed

    # The same command again, with room: it resumes (no --force needed although OUT has no
    # header yet) and ends exactly like a run that never failed.
    options = ExpandOptions(times=3, recipe=str(small_recipe), workers=1)
    again = expand(DIGITS, out, options)
    # Finished shards are reused; images of a shard cut short are made again (same bytes).
    assert again.reused + again.written == 140 and again.reused <= written_before
    if limit == 40_000:
        assert again.reused == 140
    assert not temp_files(out)
    clean = tmp_path / "clean"
    expand(DIGITS, clean, options)
    assert file_tree(out) == file_tree(clean)


def assert_no_partial_file(out: Path) -> None:
    """Every image a loader can see is whole. A worker stopped mid-write by the pool's
    shutdown may leave its hidden temporary (`.name.augment-tmp-PID`), which loaders skip and the
    next run removes; a write that fails removes its own."""
    for path in out.rglob("*_nohash_*.png"):  # temporaries end in .augment-tmp-PID: not matched
        with Image.open(path) as img:
            img.load()
    assert all(p.name.startswith(".") for p in temp_files(out))


# --- permission denied -------------------------------------------------------------------


@pytest.mark.slow
def test_permission_denied_is_a_clear_error_and_a_rerun_recovers(
    tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(DIGITS, out, ExpandOptions(times=2, recipe=str(small_recipe), workers=1))
    before = file_tree(out)
    locked = out / "train" / "3"  # the next run must write new variants in here
    locked.chmod(0o555)
    try:
        preexec = faults.permission_bits_binding()
        denied = run_cli(_digits_args(out, small_recipe, "-j", "1"), preexec)  # --times 3
    finally:
        locked.chmod(0o755)
    assert denied.returncode == 2, denied.stderr
    assert "Traceback" not in denied.stderr
    assert "Permission denied (the output folder is not writable)" in denied.stderr
    assert "train/3/" in denied.stderr
    assert not temp_files(out)  # one process: the failed write removed its temporary
    # The earlier output is still whole: its manifest and every file it lists are unchanged.
    assert {k: v for k, v in file_tree(out).items() if k in before} == before

    options = ExpandOptions(times=3, recipe=str(small_recipe), workers=1)
    expand(DIGITS, out, options)
    clean = tmp_path / "clean"
    expand(DIGITS, clean, options)
    assert file_tree(out) == file_tree(clean)


@pytest.mark.slow
def test_read_only_output_folder(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o555)
    preexec = faults.permission_bits_binding()
    try:
        denied = run_cli(_digits_args(out, small_recipe, "-j", "1"), preexec)
    finally:
        out.chmod(0o755)
    assert denied.returncode == 2 and "Traceback" not in denied.stderr
    assert "cannot create the output folder" in denied.stderr
    assert list(out.iterdir()) == []
    expand(DIGITS, out, ExpandOptions(times=3, recipe=str(small_recipe), workers=1))
    assert (out / "augment.json").is_file()


# --- where OUT may be --------------------------------------------------------------------


def test_out_next_to_a_labels_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DIGITS / "3", data / "images")
    (data / "labels.csv").write_text(
        "path,label\n" + "".join(f"images/{p.name},three\n" for p in (data / "images").iterdir())
    )
    for out in (data, data / "out", tmp_path):
        result = CliRunner().invoke(main, ["expand", str(data / "labels.csv"), str(out)])
        assert result.exit_code == 2 and "source" in result.output, result.output
    assert not (data / "out").exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("not a folder")
    result = CliRunner().invoke(main, ["expand", str(DIGITS), str(tmp_path / "out")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    assert (tmp_path / "out").read_text() == "not a folder"


def test_force_writes_next_to_foreign_files_and_never_touches_them(
    tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    (out / "train" / "3").mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    (out / "train" / "3" / "mine.png").write_bytes(faults.encoded(faults.rgb_image(), "PNG"))
    foreign = faults.tree_state(out)
    args = _digits_args(out, small_recipe, "-j", "1", "-q")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert faults.tree_state(out) == foreign

    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    after = faults.tree_state(out)
    assert {k: after[k] for k in foreign} == foreign  # every foreign file kept, byte for byte
    # Now an augment output: later runs need no --force, and even removing stale outputs
    # (fewer variants) leaves the foreign files alone.
    assert CliRunner().invoke(main, [*args[:4], "2", *args[5:]]).exit_code == 0
    assert {k: faults.tree_state(out)[k] for k in foreign} == foreign


@pytest.mark.parametrize("name", ["manifest.jsonl", "augment.json", "train/metadata.csv"])
def test_force_never_overwrites_a_file_augment_would_write(
    tmp_path: Path, small_recipe: Path, name: str
) -> None:
    out = tmp_path / "out"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("someone else's")
    if name == "augment.json":  # a foreign augment.json is not an augment header
        (out / "x").write_text("")
    before = faults.tree_state(out)
    result = CliRunner().invoke(main, [*_digits_args(out, small_recipe), "--force"])
    assert result.exit_code == 2, result.output
    assert "never overwrites" in result.output or "not a readable augment header" in result.output
    assert faults.tree_state(out) == before


def test_stale_removal_keeps_a_file_the_user_replaced(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    expand(DIGITS, out, ExpandOptions(times=3, recipe=str(small_recipe), workers=1))
    variants = [r["path"] for r in read_manifest(out) if r["variant"] >= 1]
    replaced = out / variants[0]
    replaced.write_bytes(b"my own edit")
    summary = expand(DIGITS, out, ExpandOptions(times=1, recipe=str(small_recipe), workers=1))
    # Every variant is stale now; the one whose bytes are no longer augment's is kept.
    assert summary.removed == len(variants) - 1
    assert replaced.read_bytes() == b"my own edit"
    assert [
        p for p in out.rglob("*_nohash_*.png") if p.relative_to(out).as_posix() in variants
    ] == [replaced]


def test_a_readme_of_the_users_in_a_forced_folder_is_kept(tmp_path: Path) -> None:
    """--force next to a README.md augment did not write: it stays, and the run goes on."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("# my project\n")
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    options = ExpandOptions(times=2, recipe=str(recipe), workers=1, force=True)
    expand(DIGITS, out, options)
    expand(DIGITS, out, dataclasses.replace(options, force=False))
    assert (out / "README.md").read_text() == "# my project\n"
    assert (out / "classes.json").is_file()
