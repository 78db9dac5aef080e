"""A labels file whose rows are mostly rejected (issue 20, case 19): the command prints the
first rejections, how many more there are and where every one is; `augment.json` and
`inspect --json` list every one; and memory does not grow with them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from augment.commands.report import SHOWN_REJECTIONS
from tests.helpers import DIGITS, ROOT, augment_command, peak_rss_of


def _labels(root: Path, real: int, missing: int) -> tuple[Path, set[str]]:
    """A labels file of `real` real images and `missing` rows naming files that are not
    there, with a few rows refused as written; and every path it rejects."""
    (root / "real").mkdir(parents=True)
    rows = []
    for i, image in enumerate(sorted(DIGITS.rglob("*.png"))[:real]):
        (root / "real" / f"{i}.png").write_bytes(image.read_bytes())
        rows.append(f"real/{i}.png,c{i % 2}")
    rows += [f"images/n{i % 1000:04d}/{i:08d}.jpg,c{i % 2}" for i in range(missing)]
    rows += ["../outside.png,c0", "real/0.png,c0", "notes.txt,c1"]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    rejected = {f"images/n{i % 1000:04d}/{i:08d}.jpg" for i in range(missing)}
    return root / "labels.csv", rejected | {"../outside.png", "real/0.png", "notes.txt"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        augment_command(*args), capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


@pytest.mark.slow
def test_every_rejected_row_can_be_found(tmp_path: Path) -> None:
    labels, rejected = _labels(tmp_path / "src", real=4, missing=120)
    out = tmp_path / "out"
    done = _run("expand", str(labels), str(out), "--times", "2", "-j", "1")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    header = json.loads((out / "augment.json").read_text(encoding="utf-8"))
    listed = [r["path"] for r in header["rejected"]]
    assert listed == sorted(listed) and set(listed) == rejected  # every one, by path
    assert len(listed) == len(rejected)  # each once ('real/0.png': its second row only)
    # The summary lists the first ones, says how many more and where they all are.
    shown = [line for line in done.stdout.splitlines() if line.startswith("  images/")]
    assert len(shown) == SHOWN_REJECTIONS - 1  # by path: '../outside.png' comes first
    more = len(listed) - SHOWN_REJECTIONS
    assert f"  ... and {more} more (every one is in {out / 'augment.json'}, under 'rejected')" in (
        done.stdout
    )
    assert "         120  file not found" in done.stdout
    assert f"augment: {len(listed)} input files rejected" in done.stderr
    # A rerun (which reads the last run's rejections a few at a time) says the same.
    before = (out / "augment.json").read_bytes()
    again = _run("expand", str(labels), str(out), "--times", "2", "-j", "1")
    assert again.returncode == 0 and (out / "augment.json").read_bytes() == before
    report = done.stdout.partition("rejected ")[2]
    assert report and again.stdout.partition("rejected ")[2] == report

    seen = _run("inspect", str(labels))
    assert f"would reject {len(listed)} files:" in seen.stdout
    assert f"  ... and {more} more (`augment inspect SRC --json` lists every one)" in seen.stdout
    as_json = json.loads(_run("inspect", str(labels), "--json").stdout)
    assert as_json["rejected"] == header["rejected"]


@pytest.mark.slow
def test_many_rejected_rows_keep_memory_per_row_under_a_bound(tmp_path: Path) -> None:
    """`augment expand` on 150,000 and on 450,000 rows (ten real images, the other rows
    naming missing files, each rejected and listed in augment.json): the 300,000 rows more
    cost under 100 bytes each (a rejection held per row cost about 1 KB through the run)."""
    peaks = []
    for rows in (150_000, 450_000):
        labels, _ = _labels(tmp_path / f"src-{rows}", real=10, missing=rows)
        out = tmp_path / f"out-{rows}"
        peaks.append(peak_rss_of("expand", str(labels), str(out), "--times", "2", "-j", "1"))
        with (out / "augment.json").open(encoding="utf-8") as header:
            assert sum(line.startswith('      "reason": ') for line in header) == rows + 3
    per_row = (peaks[1] - peaks[0]) / 300_000
    assert per_row < 100, f"{per_row:.0f} bytes per row ({peaks[0] >> 20} -> {peaks[1] >> 20} MB)"
