"""Memory against --times (issue 20, case 20): a large --times on one source.

    python benchmarks/large_times.py [--times 1000 4000 16000] [--workers 1]
                                     [--output-format folders|webdataset|parquet]

Each run is `augment expand` on one small PNG source (--val 0 --test 0, 64x48 outputs, the
tests' small recipe) into a fresh folder, in a process of its own; its peak resident set
(ru_maxrss of that process, with --workers 1 the one doing the pixel work) and wall time are
printed. A source's outputs are made in pieces of at most 32, so the peak should not grow
with --times beyond the rows the run keeps in path order (spilled to disk past a budget);
with shards, its outputs all go to one shard, written as they are made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import SMALL_RECIPE, tiny_source  # noqa: E402

# Runs the command as its only child and prints that child's peak RSS (KiB on Linux).
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure(times: int, workers: int, work: Path, layout: str) -> dict[str, object]:
    src, out, recipe = work / "src", work / f"out-{times}", work / "small.yaml"
    if not src.exists():
        tiny_source(src, ("cat",), 1)
        recipe.write_text(SMALL_RECIPE)
    command = [sys.executable, "-m", "augment", "expand", str(src), str(out)]
    command += ["--times", str(times), "--val", "0", "--test", "0", "--recipe", str(recipe)]
    command += ["-j", str(workers), "--output-format", layout, "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    code, peak = done.stdout.split()
    if code != "0":
        raise SystemExit(f"augment expand failed ({code}): {done.stderr}")
    shutil.rmtree(out)
    return {
        "output_format": layout,
        "times": times,
        "peak_rss_mb": round(int(peak) / 1024, 1),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--output-format", default="folders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for times in args.times:
            result = measure(times, args.workers, Path(tmp), args.output_format)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
