"""Reconciling with an earlier run: a change (recipe, preprocess, times, a source added,
removed or modified) changes exactly the outputs it must, as `augment diff` shows. What a
rerun may trust without reading is in tests/rerun/test_state.py; the no-op rerun in
tests/rerun/test_uptodate.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from augment.commands.diff import diff_outputs
from augment.recipe.build import load_recipe
from augment.run import expand
from tests.helpers import SMALL_RECIPE, every_file, manifest_by_path, small_run


def splits(out: Path) -> dict[str, str]:
    header = json.loads((out / "augment.json").read_text())
    return {h["path"]: h["split"] for h in header["holdout"]}


@pytest.mark.slow
def test_recipe_change_replaces_train_variants_only(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe))
    old, old_files, old_splits = manifest_by_path(out), every_file(out), splits(out)
    changed_recipe = tmp_path / "changed.yaml"
    changed_recipe.write_text(SMALL_RECIPE.replace("rotate: [-12, 12]", "rotate: [-20, 20]"))
    summary = expand(digits_copy, out, small_run(changed_recipe))
    new = manifest_by_path(out)

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
    expand(digits_copy, out, small_run(small_recipe))
    old, old_splits = manifest_by_path(out), splits(out)
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(SMALL_RECIPE.replace("size: [64, 48]", "size: [40, 40]"))
    expand(digits_copy, out, small_run(bigger))
    new = manifest_by_path(out)
    assert splits(out) == old_splits
    assert not old.keys() & new.keys()
    for r in new.values():
        with Image.open(out / r["path"]) as img:
            assert img.size == (40, 40)
    held_out = [r for r in new.values() if r["split"] != "train"]
    assert held_out and all(r["variant"] == 0 for r in held_out)


@pytest.mark.slow
def test_more_times_only_adds_variants(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe, times=2))
    before = every_file(out)
    expand(digits_copy, out, small_run(small_recipe, times=3))
    diff = diff_outputs_of(
        {p: r for p, r in manifest_by_path(out).items() if p in before},
        manifest_by_path(out),
        tmp_path,
    )
    assert diff.removed == [] and diff.changed == []
    new = manifest_by_path(out)
    assert {new[p]["variant"] for p in diff.added} == {2}
    assert all(every_file(out)[p] == before[p] for p in diff.unchanged)


def _new_digit(path: Path, value: int) -> None:
    Image.new("RGB", (28, 28), (value, 255 - value, 40)).save(path)


def test_added_removed_and_modified_sources_change_only_their_outputs(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out, snapshot = tmp_path / "out", tmp_path / "snapshot"
    expand(digits_copy, out, small_run(small_recipe))

    def step() -> tuple[object, dict[str, tuple[int, int, bytes]]]:
        shutil.copy(out / "manifest.jsonl", snapshot)
        before, old_splits = every_file(out), splits(out)
        expand(digits_copy, out, small_run(small_recipe))
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
    assert diff.added and all("/7/new_seven_nohash_" in p for p in diff.added)
    assert len(diff.added) in (1, 3)  # held out (1 original) or train (3 images)

    # A removed source removes only its outputs.
    gone = sorted((digits_copy / "2").iterdir())[0]
    gone.unlink()
    diff, after = step()
    assert diff.added == [] and diff.changed == []
    assert diff.removed and all(f"/2/{gone.stem}_nohash_" in p for p in diff.removed)
    assert not any(p in after for p in diff.removed)

    # A modified source (same path, new bytes) regenerates only its outputs.
    modified = digits_copy / "7" / "new_seven.png"
    _new_digit(modified, 200)
    diff, _ = step()
    assert diff.added == [] and diff.removed == []
    assert diff.changed and {c.why for c in diff.changed} == {("source",)}
    assert all("/7/new_seven_nohash_" in c.new and c.new != c.old for c in diff.changed)
    assert diff.unchanged


def test_one_walk_writes_the_manifest_and_removes_stale_outputs_and_orphans(
    tmp_path: Path,
) -> None:
    """`write_records` lists this run's rows, removes the last run's outputs it did not
    write again (if they still hold their recorded bytes) and, in the class folders it
    sweeps, the output-named files no record lists; nothing else is touched."""
    from augment.imaging.digests import sha256_file
    from augment.rerun.spill import SortedSpill
    from augment.stages.holdout import SPLITS
    from augment.stages.manifest import RecordFiles, dumps
    from augment.stages.reconcile import Previous, Row, write_records

    out = tmp_path / "out"
    (out / ".augment").mkdir(parents=True)

    def output(path: str, data: bytes = b"pixels") -> str:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
        return path

    def row(path: str) -> Row:
        split, label = path.split("/")[:2]
        return Row(dumps({"path": path, "split": split, "label": label}), split, label, None, None)

    listed = [
        output("train/a/x_nohash_0123456789ab.png"),
        output("train/b/y_nohash_0123456789ab.png"),
    ]
    stale = output("train/a/old_nohash_aaaaaaaaaaaa.png", b"old")
    replaced = output("train/b/mine_nohash_bbbbbbbbbbbb.png", b"the user's own")
    orphans = [
        output("train/a/killed_nohash_cccccccccccc.png"),
        output("train/c/killed_nohash_dddddddddddd.png"),  # a folder no record is in
    ]
    kept = [
        output("train/a/notes.txt"),  # not named as augment names outputs
        output("validation/a/killed_nohash_eeeeeeeeeeee.png"),  # a folder not swept
    ]
    with SortedSpill[Row]() as rows, SortedSpill[Previous]() as leftovers:
        for path in reversed(listed):  # added as results come, in any order
            rows.add(path, row(path))
        leftovers.add(stale, Previous(sha256_file(out / stale), "r", row(stale)))
        leftovers.add(replaced, Previous("0" * 64, "r", row(replaced)))
        files = RecordFiles(out, SPLITS)
        counts, removed = write_records(
            out, rows, leftovers, files, ["train/a", "train/b", "train/c"]
        )
        files.commit(["train"])

    assert (out / "manifest.jsonl").read_text() == "".join(row(p).line + "\n" for p in listed)
    assert counts == {("train", "a"): 1, ("train", "b"): 1}
    assert removed == 3  # the stale output and both orphans
    assert not (out / stale).exists() and not any((out / p).exists() for p in orphans)
    assert not (out / "train/c").exists()  # only orphans filled it
    assert all((out / p).is_file() for p in [*listed, replaced, *kept])
