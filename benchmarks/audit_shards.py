"""`augment audit` of a sharded output against the same run's folder output: time and memory.

    python benchmarks/audit_shards.py [--times 60 240] [--workers 2]

For each --times, sample_data/textures (default recipe, 224x224 JPEG) is expanded once per
output format (folders, webdataset, parquet) with one shard per split (--shard-size 100000,
so the train shard is as large as it gets), then `augment audit OUT -j WORKERS` runs in a
process of its own: its wall time and peak resident set (ru_maxrss) are printed as JSON
lines. The shards are read a sample at a time, so the peak should follow the samples' count
(records and fingerprints, as for folders), not the shard's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ROOT / "sample_data" / "textures"
FORMATS = ("folders", "webdataset", "parquet")

# Runs the command as its only child and prints its exit code and peak RSS (KiB on Linux).
_MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def augment(*args: str) -> list[str]:
    return [sys.executable, "-m", "augment", *args]


def measure(times: int, layout: str, workers: int, work: Path) -> dict[str, object]:
    out = work / f"{layout}-{times}"
    expand = augment("expand", str(TEXTURES), str(out), "--times", str(times), "--quiet")
    expand += ["-j", str(workers), "--output-format", layout, "--shard-size", "100000"]
    subprocess.run(expand, check=True, cwd=ROOT)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *augment("audit", str(out), "-j", str(workers))],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    code, peak = done.stdout.split()
    shards = sorted((out / "shards").glob("train-*")) if layout != "folders" else []
    return {
        "output_format": layout,
        "times": times,
        "outputs": len((out / "manifest.jsonl").read_text().splitlines()),
        "train_shard_mb": round(shards[0].stat().st_size / 2**20, 1) if shards else None,
        "audit_exit": int(code),
        "audit_seconds": round(seconds, 2),
        "audit_peak_rss_mb": round(int(peak) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[60, 240])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for times in args.times:
            for layout in FORMATS:
                print(json.dumps(measure(times, layout, args.workers, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
