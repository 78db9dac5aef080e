"""The per-machine rerun state (OUT/.augment): kept out of what a consumer reads, trusted
only where a stamp proves a file unchanged, lost at the cost of a rehash, never a rewrite;
and the lock that keeps two runs out of one OUT."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from augment.errors import OutputError
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.rerun.state import exclusive_run
from augment.rerun.uptodate import MEMO_NAME
from augment.run import expand
from tests.helpers import every_file, manifest_by_path, small_run


def test_manifest_holds_no_per_machine_state(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe))
    stamps = (out / OUTPUTS_STATE_NAME).read_text().splitlines()
    assert any("stamp" in json.loads(line) for line in stamps)
    for text in ((out / "manifest.jsonl").read_text(), (out / "augment.json").read_text()):
        assert "mtime" not in text and "stamp" not in text and str(tmp_path) not in text


def test_same_size_corrupted_output_is_made_again(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe))
    victim = out / sorted(manifest_by_path(out))[5]
    good = victim.read_bytes()
    st = victim.stat()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    victim.write_bytes(bytes(bad))  # same size; a later write has a later mtime:
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    toucher = out / sorted(manifest_by_path(out))[9]
    os.utime(toucher, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))  # same bytes
    toucher_inode = toucher.stat().st_ino

    again = expand(digits_copy, out, small_run(small_recipe))
    assert again.outputs_rehashed == 2 and again.written == 1
    assert victim.read_bytes() == good
    assert toucher.stat().st_ino == toucher_inode  # verified, not rewritten


def test_touched_source_is_hashed_again_but_nothing_is_rewritten(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe))
    source = digits_copy / "3" / sorted(os.listdir(digits_copy / "3"))[0]
    os.utime(source, ns=(0, 1_000_000_000))  # same bytes, another mtime
    before = every_file(out)
    again = expand(digits_copy, out, small_run(small_recipe))
    assert again.sources_read == 1 and again.written == 0
    # The state, and the no-op rerun's memo a full run keeps or drops (augment/rerun/memo.py).
    kept = (STATE_NAME, MEMO_NAME)
    assert {k: v for k, v in every_file(out).items() if k not in kept} == {
        k: v for k, v in before.items() if k not in kept
    }


def test_a_second_run_into_the_same_output_is_refused_while_one_runs(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(digits_copy, out, small_run(small_recipe, times=1))
    before = every_file(out)
    with exclusive_run(out), pytest.raises(OutputError, match="another augment run"):
        expand(digits_copy, out, small_run(small_recipe, times=2))
    assert every_file(out) == before
    assert expand(digits_copy, out, small_run(small_recipe, times=1)).written == 0


def test_lost_state_costs_a_rehash_and_rewrites_nothing(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(digits_copy, out, small_run(small_recipe))
    (out / STATE_NAME).unlink()  # e.g. OUT copied to another machine without .augment/
    before = every_file(out)
    again = expand(digits_copy, out, small_run(small_recipe))
    assert again.written == 0 and again.outputs_rehashed == first.total
    assert again.sources_read == 60
    after = every_file(out)
    # The state is rewritten, and the no-op rerun's memo kept (augment/rerun/memo.py).
    assert {k: v for k, v in after.items() if k not in (STATE_NAME, MEMO_NAME)} == before
    assert expand(digits_copy, out, small_run(small_recipe)).outputs_rehashed == 0
