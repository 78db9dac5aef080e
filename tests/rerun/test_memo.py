"""The no-op rerun's memo (augment/rerun/memo.py): a rerun that meets the files the memo
rests on returns its summary without ingest; any change to SRC, OUT or the state leaves the
decision to the proof, which notices it as before."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import augment.rerun.memo as memo_module
import augment.run as expand_module
from augment.layout import STATE_NAME
from augment.model import ExpandOptions, ExpandSummary
from augment.rerun.uptodate import MEMO_NAME, output_snapshot, snapshot_digest
from augment.run import expand
from tests.helpers import DIGITS, PAIRS, RESIZED, TEXTURES, every_file


def settle(root: Path) -> Path:
    """Date every file an hour back, and wait out the ctime's tick: a dataset that has sat
    on disk, whose stamps a memo may rest on."""
    then = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(then, then))
    time.sleep(2 * memo_module.CTIME_TICK_NS / 1e9)
    return root


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for c in ("0", "1", "2"):
        shutil.copytree(DIGITS / c, root / c)
    (root / "1" / "notes.txt").write_text("not an image\n")  # rejected for its name
    return settle(root)


def opts(recipe: Path, **changes: Any) -> ExpandOptions:
    base = ExpandOptions(times=2, recipe=str(recipe), workers=1, val=0, test=0)
    return dataclasses.replace(base, **changes)


def refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("not expected on this path")


def without_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expand_module, "ingest", refuse)


def made(summary: ExpandSummary) -> dict[str, Any]:
    fields = dataclasses.asdict(summary)
    for cost in ("seconds", "timings"):
        del fields[cost]
    return fields


def proof_summary(src: Path, out: Path, options: ExpandOptions) -> ExpandSummary:
    """What the proof alone concludes (the memo left aside)."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(memo_module, "remembered_summary", lambda *args: None)
        return expand(src, out, options)


def texture_pairs(tmp_path: Path) -> Path:
    """Textures with a resized copy (a duplicate cluster) and a file that is no image."""
    from PIL import Image

    root = tmp_path / "textures"
    shutil.copytree(TEXTURES, root)
    with Image.open(root / PAIRS[0][0]) as img:
        img.resize((img.width // 2, img.height // 2)).save(root / RESIZED, quality=80)
    (root / "brick" / "notes.txt").write_text("not an image\n")
    return settle(root)


@pytest.mark.parametrize("holdout", [{}, {"val": 0.2, "test": 0.1, "balance": True}])
def test_a_rerun_takes_the_memo_with_the_proofs_summary_and_touches_nothing(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch, holdout: dict[str, Any]
) -> None:
    root = texture_pairs(tmp_path)
    out = tmp_path / "out"
    options = opts(small_recipe, **holdout)
    first = expand(root, out, options)
    assert (out / MEMO_NAME).is_file()
    proven = proof_summary(root, out, options)
    before = every_file(out)
    with monkeypatch.context() as patched:
        without_ingest(patched)
        again = expand(root, out, dataclasses.replace(options, workers=2))
    assert again.fast_path and made(again) == made(proven)
    assert again.duplicates and again.rejected and again.reused == first.total
    assert set(again.timings) == {"recipe", "ingest", "check"}
    assert every_file(out) == before


def test_a_source_edited_in_place_with_size_and_mtime_kept_is_read(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    victim = src / "0" / "digit0_01.png"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size; the bytes differ
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: only ctime moved
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path and again.sources_read == 1


@pytest.mark.parametrize("change", ["deleted", "added", "renamed"])
def test_a_source_deleted_added_or_renamed_is_noticed(
    src: Path, tmp_path: Path, small_recipe: Path, change: str
) -> None:
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    victim = src / "0" / "digit0_01.png"
    if change == "deleted":
        victim.unlink()
    elif change == "added":
        shutil.copy2(DIGITS / "3" / "digit3_01.png", src / "0" / "digit3_01.png")
    else:
        victim.rename(src / "0" / "digit0_99.png")
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path
    step = {"deleted": -2, "added": 2, "renamed": 0}[change]
    assert again.total == first.total + step


@pytest.mark.parametrize("change", ["deleted", "added", "edited"])
def test_an_output_deleted_added_or_edited_is_noticed(
    src: Path, tmp_path: Path, small_recipe: Path, change: str
) -> None:
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    victim = next((out / "train" / "0").glob("*.png"))
    if change == "deleted":
        victim.unlink()
    elif change == "added":
        (out / "train" / "0" / "mine.txt").write_text("a user's file\n")
    else:
        data = bytearray(victim.read_bytes())
        data[-20] ^= 0xFF
        victim.write_bytes(bytes(data))
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path
    if change != "added":
        assert again.written == 1 and victim.read_bytes() != b""
    assert again.total == first.total
    assert expand(src, out, opts(small_recipe)).fast_path


def test_a_damaged_state_is_rebuilt_from_disk(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    (out / STATE_NAME).write_text('{"format": "augment-state/3", "sources": ')  # cut short
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path and again.written == 0
    assert again.sources_read == first.sources_read  # every source read again
    assert json.loads((out / STATE_NAME).read_text())["last_run"]
    assert expand(src, out, opts(small_recipe)).fast_path


@pytest.mark.parametrize("damage", ["{", '{"format": "augment-rerun/1"}', "[]", ""])
def test_a_damaged_memo_leaves_the_decision_to_the_proof(
    src: Path, tmp_path: Path, small_recipe: Path, damage: str
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    (out / MEMO_NAME).write_text(damage)
    again = expand(src, out, opts(small_recipe))
    assert again.fast_path and again.sources_read == 0


def test_no_memo_rests_on_a_ctime_of_just_now(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The racy rule for the ctime: a file changed within the listing's clock tick could
    change again unseen. Its mtime is old, so the state vouches for it and the proof holds."""
    monkeypatch.setattr(memo_module, "CTIME_TICK_NS", 60 * 10**9)  # however slow the machine
    victim = src / "2" / "digit2_01.png"
    mtime = victim.stat().st_mtime_ns
    os.utime(victim, ns=(mtime, mtime))  # the ctime moves to now
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    assert not (out / MEMO_NAME).exists()
    assert expand(src, out, opts(small_recipe)).fast_path


def test_no_memo_for_a_source_with_a_symbolic_link(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    (src / "2" / "link.png").symlink_to(src / "2" / "digit2_01.png")
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    assert not (out / MEMO_NAME).exists()


def test_an_output_made_by_the_previous_version_is_still_a_no_op_rerun(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    """Its state digests OUT as json of the sorted snapshot, and it has no memo."""
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    (out / MEMO_NAME).unlink()
    doc = json.loads((out / STATE_NAME).read_text())
    del doc["last_run"]["output_digest"]
    snapshot = output_snapshot(out)
    assert snapshot is not None
    doc["last_run"]["output"] = snapshot_digest(snapshot)
    (out / STATE_NAME).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    before = every_file(out)
    again = expand(src, out, opts(small_recipe))
    assert again.fast_path and again.sources_read == 0
    assert every_file(out) == before
    (out / "train" / "0" / "mine.txt").write_text("a user's file\n")  # still compared
    assert not expand(src, out, opts(small_recipe)).fast_path


def test_a_memo_that_cannot_be_written_costs_only_the_next_reruns_proof(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DiskFull(memo_module.ChangedFile):
        """The real atomic write, whose temporary cannot be made: it reports that as the
        OutputError every failed write of OUT's files is."""

        def _start_temp(self) -> Any:
            raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(memo_module, "ChangedFile", DiskFull)
        first = expand(src, out, opts(small_recipe))
    assert first.written == first.total and not (out / MEMO_NAME).exists()
    again = expand(src, out, opts(small_recipe))
    assert again.fast_path and again.sources_read == 0
