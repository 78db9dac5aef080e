"""Reruns are exact: a no-op touches nothing, and a change (recipe, source added, removed or
modified) changes exactly the outputs it must, as `augment diff` shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from augment.commands.diff import diff_outputs
from augment.errors import OutputError
from augment.expand import expand
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.model import ExpandOptions
from augment.recipe.build import load_recipe
from augment.rerun.state import exclusive_run
from tests.helpers import SMALL_RECIPE, augment_command, every_file


def records(out: Path) -> dict[str, dict]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


def splits(out: Path) -> dict[str, str]:
    header = json.loads((out / "augment.json").read_text())
    return {h["path"]: h["split"] for h in header["holdout"]}


def options(recipe: Path, **kw: object) -> ExpandOptions:
    return ExpandOptions(**{"times": 3, "recipe": str(recipe), "workers": 1, **kw})  # type: ignore[arg-type]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(augment_command(*args), capture_output=True, text=True, check=False)


def test_noop_rerun_in_a_real_process_touches_nothing(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    cmd = ["expand", str(digits_copy), str(out), "-n", "3", "-r", str(small_recipe), "-j", "2"]
    first = run_cli(*cmd)
    assert first.returncode == 0, first.stderr
    before = every_file(out)
    assert STATE_NAME in before and "manifest.jsonl" in before
    again = run_cli(*cmd)
    assert again.returncode == 0, again.stderr
    assert "0 files written" in again.stdout
    # Every file, hidden state included, keeps its bytes, inode and mtime.
    assert every_file(out) == before


def test_noop_rerun_reads_no_source_and_no_output(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(digits_copy, out, options(small_recipe))
    assert first.sources_read == 60 and first.written == first.total
    again = expand(digits_copy, out, options(small_recipe))
    assert (again.written, again.sources_read, again.outputs_rehashed) == (0, 0, 0)
    assert again.reused == first.total and again.removed == 0
    assert set(first.timings) >= {"ingest", "plan", "execute", "write"}
    # Nothing changed, and that is proven without planning (tests/test_fast_rerun.py).
    assert again.fast_path and set(again.timings) == {"recipe", "ingest", "check"}


def test_manifest_holds_no_per_machine_state(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe))
    stamps = (out / OUTPUTS_STATE_NAME).read_text().splitlines()
    assert any("stamp" in json.loads(line) for line in stamps)
    for text in ((out / "manifest.jsonl").read_text(), (out / "augment.json").read_text()):
        assert "mtime" not in text and "stamp" not in text and str(tmp_path) not in text


def test_same_size_corrupted_output_is_made_again(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe))
    victim = out / sorted(records(out))[5]
    good = victim.read_bytes()
    st = victim.stat()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    victim.write_bytes(bytes(bad))  # same size; a later write has a later mtime:
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    toucher = out / sorted(records(out))[9]
    os.utime(toucher, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))  # same bytes
    toucher_inode = toucher.stat().st_ino

    again = expand(digits_copy, out, options(small_recipe))
    assert again.outputs_rehashed == 2 and again.written == 1
    assert victim.read_bytes() == good
    assert toucher.stat().st_ino == toucher_inode  # verified, not rewritten


def test_touched_source_is_hashed_again_but_nothing_is_rewritten(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe))
    source = digits_copy / "3" / sorted(os.listdir(digits_copy / "3"))[0]
    os.utime(source, ns=(0, 1_000_000_000))  # same bytes, another mtime
    before = every_file(out)
    again = expand(digits_copy, out, options(small_recipe))
    assert again.sources_read == 1 and again.written == 0
    assert {k: v for k, v in every_file(out).items() if k != STATE_NAME} == {
        k: v for k, v in before.items() if k != STATE_NAME
    }


def test_recipe_change_replaces_train_variants_only(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe))
    old, old_files, old_splits = records(out), every_file(out), splits(out)
    changed_recipe = tmp_path / "changed.yaml"
    changed_recipe.write_text(SMALL_RECIPE.replace("rotate: [-12, 12]", "rotate: [-20, 20]"))
    summary = expand(digits_copy, out, options(changed_recipe))
    new = records(out)

    old_variants = {p for p, r in old.items() if r["variant"] > 0}
    new_variants = {p for p, r in new.items() if r["variant"] > 0}
    assert old_variants and len(new_variants) == len(old_variants)
    assert not old_variants & new_variants
    assert not any((out / p).exists() for p in old_variants)  # stale variants are gone
    assert all((out / p).is_file() for p in new_variants)
    assert summary.removed == summary.written == len(old_variants)
    # Preprocessed originals (train, validation, test) are untouched: same bytes, same mtime.
    kept = {p for p, r in old.items() if r["variant"] == 0}
    assert kept == {p for p, r in new.items() if r["variant"] == 0}
    assert all(every_file(out)[p] == old_files[p] for p in kept)
    assert splits(out) == old_splits
    assert all(
        r["recipe"] == load_recipe(str(changed_recipe)).fingerprint("same", 95)
        for r in new.values()
    )
    # augment diff: every variant changed because of the recipe; nothing else moved.
    diff = diff_outputs_of(old, new, tmp_path)
    assert diff.counts() == {
        "added": 0,
        "removed": 0,
        "changed": len(old_variants),
        "unchanged": len(kept),
    }
    assert {c.why for c in diff.changed} == {("recipe",)}


def diff_outputs_of(old: dict[str, dict], new: dict[str, dict], tmp_path: Path):
    a, b = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in old.values()))
    b.write_text("".join(json.dumps(r) + "\n" for r in new.values()))
    return diff_outputs(a, b)


def test_preprocess_change_rewrites_held_out_splits_but_never_moves_them(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe))
    old, old_splits = records(out), splits(out)
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(SMALL_RECIPE.replace("size: [64, 48]", "size: [40, 40]"))
    expand(digits_copy, out, options(bigger))
    new = records(out)
    assert splits(out) == old_splits
    assert not old.keys() & new.keys()
    for r in new.values():
        with Image.open(out / r["path"]) as img:
            assert img.size == (40, 40)
    held_out = [r for r in new.values() if r["split"] != "train"]
    assert held_out and all(r["variant"] == 0 for r in held_out)


def test_more_times_only_adds_variants(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe, times=2))
    before = every_file(out)
    expand(digits_copy, out, options(small_recipe, times=3))
    diff = diff_outputs_of(
        {p: r for p, r in records(out).items() if p in before}, records(out), tmp_path
    )
    assert diff.removed == [] and diff.changed == []
    new = records(out)
    assert {new[p]["variant"] for p in diff.added} == {2}
    assert all(every_file(out)[p] == before[p] for p in diff.unchanged)


def _new_digit(path: Path, value: int) -> None:
    Image.new("RGB", (28, 28), (value, 255 - value, 40)).save(path)


def test_added_removed_and_modified_sources_change_only_their_outputs(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out, snapshot = tmp_path / "out", tmp_path / "snapshot"
    expand(digits_copy, out, options(small_recipe))

    def step() -> tuple[object, dict[str, tuple[int, int, bytes]]]:
        shutil.copy(out / "manifest.jsonl", snapshot)
        before, old_splits = every_file(out), splits(out)
        expand(digits_copy, out, options(small_recipe))
        for path, split in old_splits.items():  # splits never move
            assert splits(out).get(path, split) == split
        diff = diff_outputs(snapshot, out)
        after = every_file(out)
        for path in diff.unchanged:  # untouched: same bytes, inode and mtime
            assert after[path] == before[path]
        return diff, after

    # A new source makes only its own outputs.
    _new_digit(digits_copy / "7" / "new_seven.png", 90)
    diff, _ = step()
    assert diff.removed == [] and diff.changed == []
    assert diff.added and all("/7/new_seven__" in p for p in diff.added)
    assert len(diff.added) in (1, 3)  # held out (1 original) or train (3 images)

    # A removed source removes only its outputs.
    gone = sorted((digits_copy / "2").iterdir())[0]
    gone.unlink()
    diff, after = step()
    assert diff.added == [] and diff.changed == []
    assert diff.removed and all(f"/2/{gone.stem}__" in p for p in diff.removed)
    assert not any(p in after for p in diff.removed)

    # A modified source (same path, new bytes) regenerates only its outputs.
    modified = digits_copy / "7" / "new_seven.png"
    _new_digit(modified, 200)
    diff, _ = step()
    assert diff.added == [] and diff.removed == []
    assert diff.changed and {c.why for c in diff.changed} == {("source",)}
    assert all("/7/new_seven__" in c.new and c.new != c.old for c in diff.changed)
    assert diff.unchanged


def test_a_second_run_into_the_same_output_is_refused_while_one_runs(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, options(small_recipe, times=1))
    before = every_file(out)
    with exclusive_run(out), pytest.raises(OutputError, match="another augment run"):
        expand(digits_copy, out, options(small_recipe, times=2))
    assert every_file(out) == before
    assert expand(digits_copy, out, options(small_recipe, times=1)).written == 0


def test_lost_state_costs_a_rehash_and_rewrites_nothing(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(digits_copy, out, options(small_recipe))
    (out / STATE_NAME).unlink()  # e.g. OUT copied to another machine without .augment/
    before = every_file(out)
    again = expand(digits_copy, out, options(small_recipe))
    assert again.written == 0 and again.outputs_rehashed == first.total
    assert again.sources_read == 60
    after = every_file(out)
    assert {k: v for k, v in after.items() if k != STATE_NAME} == before
    assert expand(digits_copy, out, options(small_recipe)).outputs_rehashed == 0
