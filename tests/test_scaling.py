"""benchmarks/scaling.py still runs against the current library (it is not run in CI, so this
keeps it from rotting): the runs make every output and the report accounts for the wall."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_the_scaling_report_accounts_for_every_stage() -> None:
    script = str(ROOT / "benchmarks" / "scaling.py")
    command = [sys.executable, script, "--sources", "12", "--times", "2", "--repeats", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    report = done.stdout
    assert "outputs per run: 24" in report
    rows = dict(re.findall(r"^\| (\w[\w+ ]*) \| ([\d.]+) \| [\d.]+ \|$", report, re.M))
    # "other" is the wall less the stages: never negative, or a stage was counted twice.
    assert float(rows["execute"]) > 0 and float(rows["other"]) >= 0
    assert float(rows["hashing"]) == 0  # a first run hashes as it reads: no phase of its own
    assert re.search(r"2 workers = [\d.]+x one worker", report)
    assert re.search(r"estimated\): [\d.]+x, serial share \d+%", report)
