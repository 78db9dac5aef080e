"""A rerun proven to change nothing returns at once (augment/uptodate.py): nothing planned,
read or written, and the summary the full run would give. Any change to what a run is made
from, or to OUT, takes the full run, which ends as a clean run with the same inputs would."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

import augment.recipe.build as recipe_module
import augment.rerun.memo as memo_module
import augment.rerun.state as state_module
import augment.rerun.uptodate as uptodate_module
import augment.run as expand_module
import augment.stages.duplicates as duplicates_module
import augment.stages.holdout as holdout_module
from augment.cli import main
from augment.errors import OutputError
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.model import ExpandOptions, ExpandSummary
from augment.rerun.state import exclusive_run
from augment.rerun.uptodate import MEMO_NAME
from augment.run import expand
from augment.stages.executor import in_process
from tests import faults
from tests.helpers import (
    DIGITS,
    PAIRS,
    RESIZED,
    SMALL_RECIPE,
    TEXTURES,
    every_file,
    file_tree,
    straddling_seed,
)

CLASSES = ("0", "1", "2", "3")


def settle(root: Path) -> None:
    """Date every file an hour back, as a dataset that has sat on disk: the racy rule
    (augment/state.py) does not let a run trust the stamp of a file modified just now."""
    then = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, ns=(then, then))


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for c in CLASSES:
        shutil.copytree(DIGITS / c, root / c)
    (root / "1" / "notes.txt").write_text("not an image\n")  # rejected for its name
    settle(root)
    return root


def opts(recipe: Path, **changes: Any) -> ExpandOptions:
    # No holdout by default: a changed source moves no split, so the full run after a change
    # must end as a clean run does (sticky splits would otherwise differ from a clean run's).
    # No test split: a test/ folder made by hand is a change of OUT.
    base = ExpandOptions(times=2, recipe=str(recipe), workers=1, val=0, test=0)
    return dataclasses.replace(base, **changes)


def refuse(*args: Any) -> None:
    raise AssertionError("not expected on this path")


def full_run_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expand_module, "unchanged_since_last_run", lambda *args: False)
    monkeypatch.setattr(memo_module, "remembered_summary", lambda *args: None)


def but_memo(files: dict[str, Any]) -> dict[str, Any]:
    """OUT's files but the no-op rerun's memo, which a full run keeps where there was none
    when the sources were too new for one (augment/rerun/memo.py)."""
    return {path: value for path, value in files.items() if path != MEMO_NAME}


COSTS = ("written", "reused", "removed", "sources_read", "outputs_rehashed")


def comparable(summary: ExpandSummary) -> dict[str, Any]:
    """What a run made, without what it cost (which a no-op rerun reports on its own)."""
    fields = dataclasses.asdict(summary)
    for cost in (*COSTS, "seconds", "timings", "fast_path"):
        del fields[cost]
    return fields


def costs(summary: ExpandSummary) -> tuple[int, ...]:
    return tuple(getattr(summary, cost) for cost in COSTS)


def clean_run(src: Path, options: ExpandOptions, tmp_path: Path) -> dict[str, bytes]:
    out = tmp_path / "clean"
    shutil.rmtree(out, ignore_errors=True)
    expand(src, out, options)
    return file_tree(out)


def test_unchanged_rerun_takes_the_fast_path_and_touches_nothing(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe, val=0.2))
    assert not first.fast_path and first.written == first.total
    assert first.counts.keys() == {"train", "validation"}
    before = every_file(out)
    again = expand(src, out, opts(small_recipe, val=0.2, workers=2))  # changes no byte
    assert again.fast_path
    assert costs(again) == (0, first.total, 0, 0, 0)
    assert comparable(again) == comparable(first)
    assert every_file(out) == before  # state.json included


def test_a_mixing_recipe_takes_the_fast_path_with_the_full_runs_summary(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        SMALL_RECIPE + "mix:\n  - MixUp: {p: 0.4, alpha: 0.4, other_class: true}\n"
        "  - CutMix: {p: 0.4, alpha: 1.0}\n"
    )
    out = tmp_path / "out"
    first = expand(src, out, opts(recipe, val=0.2, times=4))
    assert "p_0" in (out / "train" / "metadata.csv").read_text()  # soft labels
    before = every_file(out)
    fast = expand(src, out, opts(recipe, val=0.2, times=4))
    assert every_file(out) == before
    full_run_only(monkeypatch)
    full = expand(src, out, opts(recipe, val=0.2, times=4))
    assert fast.fast_path and comparable(fast) == comparable(full) == comparable(first)
    assert but_memo(every_file(out)) == but_memo(before)


def test_fast_summary_is_the_full_runs_even_where_the_last_runs_differs(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates split apart by an earlier run, a new copy joining them, a class too small
    to hold out, a rejected file and --balance: every summary field has something in it."""
    root = tmp_path / "src"
    shutil.copytree(TEXTURES, root)
    with Image.open(root / PAIRS[0][0]) as img:
        img.resize((img.width // 2, img.height // 2)).save(root / RESIZED, quality=80)
    (root / "tiny").mkdir()
    for digit in ("0", "5"):
        shutil.copy(DIGITS / digit / f"digit{digit}_01.png", root / "tiny")
    (root / "brick" / "notes.txt").write_text("not an image\n")
    settle(root)
    seed = straddling_seed(root)
    options = ExpandOptions(times=2, recipe=str(small_recipe), val=0.2, test=0.1, seed=seed)
    options = dataclasses.replace(options, workers=1, balance=True)
    out = tmp_path / "out"
    expand(root, out, dataclasses.replace(options, near_duplicates=-1))  # the pair splits
    with Image.open(root / PAIRS[0][0]) as img:
        img.save(root / "brick" / "brick_03_copy.jpg", quality=70)  # a third copy joins
    settle(root)
    last = expand(root, out, options)
    before = every_file(out)

    with monkeypatch.context() as patched:
        # The clusters come from the state: no pair of hashes is compared again.
        patched.setattr(duplicates_module, "_similar", refuse)
        fast = expand(root, out, options)
    assert every_file(out) == before
    full_run_only(monkeypatch)
    full = expand(root, out, options)
    assert fast.fast_path and not full.fast_path
    assert comparable(fast) == comparable(full)
    assert costs(fast) == costs(full) == (0, fast.total, 0, 0, 0)
    assert but_memo(every_file(out)) == but_memo(before)
    assert fast.duplicate_conflicts and fast.too_small and fast.rejected and fast.balanced
    # The new copy now has a split of its own: the last run's summary would be wrong here.
    assert fast.duplicate_conflicts != last.duplicate_conflicts


def test_the_command_prints_what_the_full_run_prints(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    command = ["expand", str(src), str(out), "-n", "2", "-r", str(small_recipe), "-j", "1"]
    command += ["--val", "0.2", "--test", "0.1", "--balance"]
    runner = CliRunner()
    assert runner.invoke(main, command).exit_code == 0
    fast = runner.invoke(main, command)
    full_run_only(monkeypatch)
    full = runner.invoke(main, command)
    assert fast.exit_code == full.exit_code == 0
    timing = re.compile(r" in \d+\.\ds( \(\d+ images/s\))?")
    assert timing.sub("", fast.output) == timing.sub("", full.output)
    assert "0 files written" in fast.output and "rejected 1 input files" in fast.output


def _source(src: Path) -> Path:
    return src / "2" / "digit2_02.png"


def _touch_source(src: Path, out: Path) -> None:
    os.utime(_source(src), ns=(0, 1_000_000_000))  # same bytes, another mtime


def _modify_source(src: Path, out: Path) -> None:
    Image.new("RGB", (28, 28), (200, 30, 90)).save(_source(src))
    settle(src)


def _add_source(src: Path, out: Path) -> None:
    Image.new("RGB", (28, 28), (10, 130, 250)).save(src / "3" / "new.png")
    settle(src)


def _remove_source(src: Path, out: Path) -> None:
    _source(src).unlink()


def _relabel_source(src: Path, out: Path) -> None:
    _source(src).rename(src / "3" / _source(src).name)


def _rejected_file_renamed(src: Path, out: Path) -> None:
    (src / "1" / "notes.txt").rename(src / "1" / "notes.text")  # another reason


def _rejected_file_added(src: Path, out: Path) -> None:
    (src / "0" / "readme.md").write_text("about these digits\n")
    settle(src)


def _delete_output(src: Path, out: Path) -> None:
    (out / _listed(out)[3]).unlink()


def _corrupt_output(src: Path, out: Path) -> None:
    victim = out / _listed(out)[3]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))


def _touch_output(src: Path, out: Path) -> None:
    os.utime(out / _listed(out)[3], ns=(0, 1_000_000_000))


def _drop_manifest_record(src: Path, out: Path) -> None:
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    (out / "manifest.jsonl").write_text("".join(lines[1:]))


def _delete_header(src: Path, out: Path) -> None:
    (out / "augment.json").unlink()


def _delete_card(src: Path, out: Path) -> None:
    (out / "README.md").unlink()


def _journal_left(src: Path, out: Path) -> None:
    # What a killed run leaves when it had finished a shard: its records, in the journal.
    journal = out / ".augment" / "journal"
    journal.mkdir()
    (journal / "shard.jsonl").write_text((out / "manifest.jsonl").read_text().splitlines()[0])


def _temporary_state_left(src: Path, out: Path) -> None:
    (out / ".augment" / ".state.json.augment-tmp-99999").write_text("{}")  # a killed state write


def _listed(out: Path) -> list[str]:
    return sorted(json.loads(line)["path"] for line in (out / "manifest.jsonl").open())


CHANGES: dict[str, Callable[[Path, Path], None]] = {
    "source touched": _touch_source,
    "source modified": _modify_source,
    "source added": _add_source,
    "source removed": _remove_source,
    "source moved to another class": _relabel_source,
    "rejected file renamed": _rejected_file_renamed,
    "rejected file added": _rejected_file_added,
    "output deleted": _delete_output,
    "output corrupted": _corrupt_output,
    "output touched": _touch_output,
    "manifest record dropped": _drop_manifest_record,
    "header deleted": _delete_header,
    "dataset card deleted": _delete_card,
    "journal of an interrupted run": _journal_left,
    "temporary file in the state folder": _temporary_state_left,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_takes_the_full_run_which_ends_as_a_clean_run(
    src: Path, tmp_path: Path, small_recipe: Path, change: str
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    assert expand(src, out, opts(small_recipe)).fast_path
    CHANGES[change](src, out)
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path
    assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)
    assert not (out / ".augment" / "journal").exists()
    # And the memo, if the sources were still long enough before this run (memo.py).
    assert set(os.listdir(out / ".augment")) - {"rerun.json"} == {"state.json", "outputs.jsonl"}
    assert expand(src, out, opts(small_recipe)).fast_path  # and the next rerun is fast again


OPTION_CHANGES: dict[str, dict[str, Any]] = {
    "times": {"times": 3},
    "seed": {"seed": 1},
    "val": {"val": 0.4},
    "test": {"test": 0.2},
    "quality": {"quality": 80},
    "format": {"output_format": "jpg"},
    "balance": {"balance": True},
    "no originals": {"no_originals": True},
    "near duplicates": {"near_duplicates": -1},
    "group by": {"group_by": r"digit\d"},
    "max pixels": {"max_pixels": 10_000},
    "force": {"force": True},
}


@pytest.mark.parametrize("change", list(OPTION_CHANGES))
def test_a_changed_option_takes_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path, change: str
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    # Another holdout is refused (see test_another_holdout_is_refused): --resplit asks.
    resplit = {"resplit": True} if change in ("seed", "val", "test") else {}
    changed = opts(small_recipe, **OPTION_CHANGES[change], **resplit)
    assert not expand(src, out, changed).fast_path
    assert file_tree(out) == clean_run(src, changed, tmp_path)
    assert expand(src, out, changed).fast_path


def test_a_changed_recipe_takes_the_full_run_a_comment_does_not_need_to(
    src: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    expand(src, out, opts(recipe))
    recipe.write_text("# the same transforms, commented\n" + SMALL_RECIPE)
    before = every_file(out)
    assert expand(src, out, opts(recipe)).fast_path  # what it makes is the same
    assert every_file(out) == before
    for text in (
        SMALL_RECIPE.replace("for tests", "for the tests"),  # the header quotes it
        SMALL_RECIPE.replace("rotate: [-12, 12]", "rotate: [-20, 20]"),
    ):
        recipe.write_text(text)
        assert not expand(src, out, opts(recipe)).fast_path
        assert file_tree(out) == clean_run(src, opts(recipe), tmp_path)


def test_another_tool_or_library_version_takes_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    with monkeypatch.context() as m:
        m.setattr(uptodate_module, "code_fingerprint", lambda: "edited modules")
        assert not expand(src, out, opts(small_recipe)).fast_path
    with monkeypatch.context() as m:
        m.setattr(uptodate_module, "__version__", "0.0.0-another")
        assert not expand(src, out, opts(small_recipe)).fast_path
    with monkeypatch.context() as m:  # another OpenCV: installed elsewhere, it names outputs
        m.setattr(uptodate_module, "library_stamps", lambda: [["cv2", "elsewhere", 1, 2, 3]])
        m.setattr(recipe_module.cv2, "__version__", "0.0.0-another")
        summary = expand(src, out, opts(small_recipe))
        assert not summary.fast_path and summary.written == summary.total  # new names
        assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)
    assert expand(src, out, opts(small_recipe)).written == summary.total  # and back


def test_a_file_or_folder_added_to_the_output_takes_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    clean = clean_run(src, opts(small_recipe), tmp_path)
    (out / "train" / "0" / "mine.txt").write_text("a note of the user's\n")
    assert not expand(src, out, opts(small_recipe)).fast_path
    assert file_tree(out) == {**clean, "train/0/mine.txt": b"a note of the user's\n"}
    assert expand(src, out, opts(small_recipe)).fast_path  # left alone, and now known
    # An empty folder counts too.
    (out / "test").mkdir()
    assert not expand(src, out, opts(small_recipe)).fast_path
    assert expand(src, out, opts(small_recipe)).fast_path


def test_a_symbolic_link_in_the_output_keeps_reruns_on_the_full_path(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    os.symlink(src, out / "sources")
    for _ in range(2):
        summary = expand(src, out, opts(small_recipe))
        assert not summary.fast_path and summary.written == 0


def test_an_interrupted_run_then_the_last_runs_options_take_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))

    def one_shard_then_ctrl_c(ctx: Any, shards: Any) -> Any:
        for n, result in enumerate(in_process(ctx, shards)):
            if n == 1:
                raise KeyboardInterrupt
            yield result

    with pytest.raises(KeyboardInterrupt):
        expand(src, out, opts(small_recipe, times=6), executor=one_shard_then_ctrl_c)
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path and again.removed > 0
    assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)


def test_state_from_another_source_folder_takes_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    other = tmp_path / "other"
    shutil.copytree(src, other)  # the same files, at another path
    summary = expand(other, out, opts(small_recipe))
    assert not summary.fast_path and summary.written == 0
    assert file_tree(out) == clean_run(other, opts(small_recipe), tmp_path)


@pytest.mark.parametrize(
    "name, data",
    [
        # Rejected when read: the state remembers why, by the file's stamp, so a rerun does
        # not read it again.
        ("0/notes.png", b"meeting notes, not a picture\n"),
        # Its header reads, so it is planned, but a worker cannot decode it: a run made from
        # the same bytes and recipe rejects it again, so the last run counts as complete.
        ("1/truncated.jpg", faults.truncated_jpeg()),
    ],
)
def test_a_source_rejected_for_its_bytes_keeps_reruns_on_the_fast_path(
    src: Path, tmp_path: Path, small_recipe: Path, name: str, data: bytes
) -> None:
    """A scraped dataset nearly always holds a broken file or two: with one, every rerun
    was a full run (~3 s instead of ~0.4 s at 10,000 sources)."""
    (src / name).write_bytes(data)
    settle(src)
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    assert name in {r.path for r in first.rejected}
    before = every_file(out)
    for _ in range(2):
        again = expand(src, out, opts(small_recipe))
        assert again.fast_path and again.sources_read == 0 and again.written == 0
        assert comparable(again) == comparable(first)  # the rejection listed as before
    assert every_file(out) == before
    # Repaired (a new stamp), the file is read again and taken.
    shutil.copy(DIGITS / "1" / sorted(os.listdir(DIGITS / "1"))[0], src / name)
    settle(src)
    repaired = expand(src, out, opts(small_recipe))
    assert not repaired.fast_path and name not in {r.path for r in repaired.rejected}
    assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)


def test_a_rejection_remembered_by_another_tool_is_read_again(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another version of the tool or of its decoders may read what this one could not."""
    (src / "0" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    settle(src)
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    assert "0/damaged.png" in {r.path for r in first.rejected}
    assert expand(src, out, opts(small_recipe)).sources_read == 0
    monkeypatch.setattr(expand_module, "tool_stamp", lambda: "another tool")
    again = expand(src, out, opts(small_recipe))
    assert again.sources_read == 1 and not again.fast_path
    assert comparable(again) == comparable(first)


def test_a_rejection_whose_cause_may_pass_is_tried_again(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    """A source that changes while the run goes on is rejected: the next run, even with
    every stamp as it was, does not trust that verdict and makes what the last one could
    not."""
    victim = src / "2" / sorted(os.listdir(src / "2"))[0]
    name = victim.relative_to(src).as_posix()
    data, st = victim.read_bytes(), victim.stat()

    def meddling(ctx: Any, shards: Any) -> Any:
        victim.write_bytes(b"x" + data[1:])  # in place: the same inode and size
        try:
            yield from in_process(ctx, shards)
        finally:  # back as it was, size and mtime too (its ctime moved: no call sets it)
            victim.write_bytes(data)
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))

    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe), executor=meddling)
    assert {r.path: r.reason for r in first.rejected}[name] == (
        "file changed while the run was going on"
    )
    again = expand(src, out, opts(small_recipe))
    # The others' stamps vouch for them; the victim's ctime tells it was written to.
    assert not again.fast_path and again.sources_read == 1
    assert again.written == 2 and name not in {r.path for r in again.rejected}
    assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)


def test_a_source_over_the_pixel_limit_is_not_remembered_as_rejected(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    """Over --max-pixels is a verdict on the file and this run's option together: a run
    with a higher limit takes the file, although its stamp is the one remembered."""
    shutil.copy(TEXTURES / "brick" / "brick_01.jpg", src / "3" / "brick.jpg")  # 200 x 136
    settle(src)
    out = tmp_path / "out"
    limited = expand(src, out, opts(small_recipe, max_pixels=32 * 32))
    assert "--max-pixels" in {r.path: r.reason for r in limited.rejected}["3/brick.jpg"]
    full = expand(src, out, opts(small_recipe))
    assert [r.path for r in full.rejected] == ["1/notes.txt"]  # rejected for its name only
    assert file_tree(out) == clean_run(src, opts(small_recipe), tmp_path)


def test_a_header_that_would_not_hold_out_the_same_takes_the_full_run(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path checks that the last run's header gives back its own holdout; were the
    holdout not sticky (a future bug), the full run, not the fast path, would decide."""
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe, val=0.3))
    sticky = holdout_module.assign_splits

    def forgetful(originals: Any, val: Any, test: Any, seed: int, previous: Any = None) -> Any:
        return sticky(originals, val, test, seed + 1)

    monkeypatch.setattr(holdout_module, "assign_splits", forgetful)
    again = expand(src, out, opts(small_recipe, val=0.3))
    assert not again.fast_path and again.originals == first.originals
    assert again.written > 0  # other originals were held out: what the full run does


def test_labels_file_changes_take_the_full_run(
    tmp_path: Path, src: Path, small_recipe: Path
) -> None:
    labels = src / "labels.csv"
    rows = [(p.relative_to(src).as_posix(), p.parent.name) for p in sorted(src.rglob("*.png"))]

    def write(rows: list[tuple[str, str, str]]) -> None:
        labels.write_text("path,label,group\n" + "".join(",".join(r) + "\n" for r in rows))

    write([(path, label, "") for path, label in rows])
    out = tmp_path / "out"
    expand(labels, out, opts(small_recipe))
    assert expand(labels, out, opts(small_recipe)).fast_path
    changes = [
        [(path, "zero" if label == "0" else label, "") for path, label in rows],  # relabelled
        [(path, label, "") for path, label in rows[1:]],  # a row less
        [(path, label, path[:1]) for path, label in rows[1:]],  # groups
    ]
    for changed in changes:
        write(changed)
        assert not expand(labels, out, opts(small_recipe)).fast_path
        assert file_tree(out) == clean_run(labels, opts(small_recipe), tmp_path)
        assert expand(labels, out, opts(small_recipe)).fast_path


def test_an_unchanged_rerun_still_waits_for_no_one(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    """The fast path takes the lock too: it does not look at OUT while another run writes."""
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    with exclusive_run(out), pytest.raises(OutputError, match="another augment run"):
        expand(src, out, opts(small_recipe))
    assert expand(src, out, opts(small_recipe)).fast_path


@pytest.mark.parametrize(
    "damage",
    [
        {"inputs": 7},
        {"clusters": "x"},
        {"clusters": [["0/digit0_01.png", 3]]},
        {"clusters": [["no/such/original.png"]]},
    ],
)
def test_a_damaged_last_run_entry_is_ignored(
    src: Path, tmp_path: Path, small_recipe: Path, damage: dict[str, Any]
) -> None:
    out = tmp_path / "out"
    expand(src, out, opts(small_recipe))
    state = json.loads((out / STATE_NAME).read_text())
    assert set(state["last_run"]) == {"inputs", "output", "output_digest", "clusters"}
    state["last_run"].update(damage)
    (out / STATE_NAME).write_text(json.dumps(state))
    assert not expand(src, out, opts(small_recipe)).fast_path
    assert expand(src, out, opts(small_recipe)).fast_path


# Imported by a run with work to do; a command with none should not pay for them (~0.5 s).
IMAGE_LIBRARIES = ("albumentations", "cv2", "numpy", "PIL", "simplejpeg", "tqdm")


def libraries_loaded(*args: str) -> set[str]:
    """Which of IMAGE_LIBRARIES the command `augment ARGS` imports, run in a new process."""
    code = (
        "import sys\n"
        "from augment.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"print(' '.join(m for m in {IMAGE_LIBRARIES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return set(done.stdout.splitlines()[-1].split())


@pytest.mark.slow
def test_a_command_with_nothing_to_do_loads_no_image_library(
    src: Path, tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    run = ["expand", str(src), str(out), "--recipe", str(small_recipe), "--times", "2", "-q"]
    assert {"albumentations", "cv2", "numpy"} <= libraries_loaded(*run)  # work to do
    assert libraries_loaded(*run) == set()  # a rerun proven unchanged
    assert libraries_loaded("--help") == set()
    assert libraries_loaded("expand", "--help") == set()
    assert libraries_loaded("diff", str(out), str(out)) == set()
    (src / "0" / "digit0_01.png").unlink()
    assert "albumentations" in libraries_loaded(*run)  # a change: the full run again


def test_the_outputs_entries_are_not_read_on_a_no_op_rerun(
    src: Path, tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outputs' entries have a file of their own, read when first used: a rerun proven
    unchanged never reads it. A state in the earlier format (the outputs' entries inside
    state.json) costs one full run that remakes nothing, and writes the two files."""
    out = tmp_path / "out"
    first = expand(src, out, opts(small_recipe))
    with monkeypatch.context() as patched:
        patched.setattr(state_module, "_read_outputs", refuse)
        assert expand(src, out, opts(small_recipe)).fast_path

    text = (out / STATE_NAME).read_text()
    doc = json.loads(text)
    outputs = [json.loads(line) for line in (out / OUTPUTS_STATE_NAME).read_text().splitlines()]
    doc["format"] = "augment-state/1"
    doc["outputs"] = {entry.pop("path"): entry for entry in outputs}
    (out / STATE_NAME).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    (out / OUTPUTS_STATE_NAME).unlink()
    again = expand(src, out, opts(small_recipe))
    assert not again.fast_path and again.written == 0 and again.outputs_rehashed == first.total
    assert (out / STATE_NAME).read_text() == text
    assert expand(src, out, opts(small_recipe)).fast_path
