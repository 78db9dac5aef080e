"""`augment audit OUT` at scale: CPU, wall time, peak memory, crop candidates and pixel checks.

    PYTHONPATH=. python benchmarks/audit_scale.py [--outputs 1000 10000 30000]
        [--sets photos digits] [--workers 1 2] [--crop-search on off]
        [--tree NAME=TREE ...] [--work DIR]

(PYTHONPATH=.: the library measured is this tree's, not another installed `augment`.)

For each set and each --outputs, a source is made and expanded (default recipe, `--times` so
that the output has about that many files), then `augment audit OUT -j WORKERS` runs in a
process of its own, once per --workers and per --crop-search (`off`: with `--no-crop-search`,
the whole-image checks alone; a tree without that option cannot run it):

- photos: JPEGs of 224 x 224 cut from scikit-image's photos (benchmarks/bench.py's
  make_corpus): crops of a dozen photos, so many files of two splits overlap for real.
- digits: scikit-learn's 8 x 8 digits scaled to 64 x 64: look-alikes, hundreds of files
  within a few bits of each other.

Printed as JSON lines: the output's files, whether the crop search ran, the audit's CPU
seconds (user + system), wall seconds, peak resident set (MB), and per file; the crop search's
candidate pairs (file pairs whose hashes came near a crop window, handed to the pixel check)
and its pixel checks. With
--tree NAME=TREE (a folder holding a commit's `augment` package, e.g. made by `git archive
COMMIT augment | tar -x -C TREE`; repeatable), the audits are run with each such tree's
package instead of this tree's: the cost before and after a change, on the same outputs.
With --work DIR the sources and outputs are kept there, and a later run reuses them. The
whole command is measured, start-up included (about 0.5 s of CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench  # noqa: E402  (benchmarks/bench.py, beside this file)

# Run in the audit's process: counts the crop search's candidate pairs and pixel checks (by
# wrapping the audit's own functions; a tree without the crop search counts none), runs the
# command, and prints the counts as JSON on stderr's last line.
_COUNTED = """
import json, sys
from augment.commands import audit_duplicates as audit
counts = {"candidate_pairs": 0, "pixel_checks": 0}
if hasattr(audit, "crop_fit"):
    fit = audit.crop_fit
    def counted_fit(*args, **kwargs):
        counts["pixel_checks"] += 1
        return fit(*args, **kwargs)
    audit.crop_fit = counted_fit
if hasattr(audit, "_crop_hits"):
    hits = audit._crop_hits
    def counted_hits(*args, **kwargs):
        found = hits(*args, **kwargs)
        counts["candidate_pairs"] += len(found)
        return found
    audit._crop_hits = counted_hits
from augment.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 2
print(json.dumps(counts), file=sys.stderr)
sys.exit(code)
"""


def make_photos(root: Path, sources: int) -> Path:
    return bench.make_corpus(root, sources, (224, 224), 90)


def make_digits(root: Path, sources: int) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for n in range(sources):
        image, label = digits.images[n], int(digits.target[n])
        grey = (image * 255 / 16).astype(np.uint8)
        grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_CUBIC)
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"digit_{n:05d}.png"), grey)
    return root


SETS = {"photos": (make_photos, 100_000), "digits": (make_digits, 1797)}


def expanded(name: str, outputs: int, work: Path) -> Path:
    """An expand output of about `outputs` files: sources x times for train (80 %), the
    held-out originals once."""
    make, most = SETS[name]
    out = work / f"{name}-{outputs}-out"
    if (out / "manifest.jsonl").exists():  # made by an earlier run with this --work
        return out
    # Train holds ~80 % of the sources, `times` files each; the held-out ones once.
    times, sources = 5, max(10, round(outputs / (0.8 * 5 + 0.2)))
    if sources > most:  # no more distinct pictures: more variants of each
        times, sources = max(1, round((outputs / most - 0.2) / 0.8)), most
    src = make(work / f"{name}-{outputs}-src", sources)
    command = [sys.executable, "-m", "augment", "expand", str(src), str(out), "--quiet"]
    subprocess.run([*command, "--times", str(times)], check=True, cwd=ROOT)
    return out


def audit(out: Path, workers: int, tree: Path, crop_search: bool = True) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", _COUNTED, "audit", str(out), "-j", str(workers)]
    if not crop_search:
        command.append("--no-crop-search")
    started = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode not in (0, 1):  # 1: findings
        raise SystemExit(f"augment audit failed ({child.returncode}): {errors}")
    counts = json.loads(errors.strip().splitlines()[-1])
    files = len((out / "manifest.jsonl").read_text().splitlines())
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "files": files,
        "workers": workers,
        "crop_search": crop_search,
        "findings_exit": child.returncode,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_ms_per_file": round(cpu * 1000 / files, 2),
        **counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["photos", "digits"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--crop-search",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="off: audit with --no-crop-search (the whole-image checks only); both: on off",
    )
    parser.add_argument("--tree", action="append", default=[], help="NAME=TREE, repeatable")
    parser.add_argument("--work", type=Path, help="keep the outputs here, reuse those made")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("this tree", str(ROOT))]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.sets:
            for outputs in args.outputs:
                out = expanded(name, outputs, work)
                for label, tree in trees:
                    for workers in args.workers:
                        for search in args.crop_search:
                            measured = audit(out, workers, Path(tree), search == "on")
                            row = {"set": name, "tree": label, **measured}
                            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
