"""A rerun with nothing to do: proven unchanged, it reads and writes nothing. The cases that
must take the full run are in tests/test_fast_rerun.py (to move here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from augment.layout import STATE_NAME
from augment.run import expand
from tests.helpers import augment_command, every_file, small_run


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(augment_command(*args), capture_output=True, text=True, check=False)


@pytest.mark.slow
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


def test_a_no_op_rerun_reads_nothing_and_runs_only_the_stages_that_prove_it(
    tmp_path: Path, digits_copy: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    first = expand(digits_copy, out, small_run(small_recipe))
    assert first.sources_read == 60 and first.written == first.total
    again = expand(digits_copy, out, small_run(small_recipe))
    assert (again.written, again.sources_read, again.outputs_rehashed) == (0, 0, 0)
    assert again.reused == first.total and again.removed == 0
    assert set(first.timings) >= {"ingest", "plan", "execute", "write"}
    # Nothing changed, and that is proven without planning: no plan, execute or write.
    assert again.fast_path and set(again.timings) == {"recipe", "ingest", "check"}
