"""Peak memory of a first `augment expand` run against the number of sources: the curve the
performance issue asks to be flat from 1,000 to 100,000 sources.

The sources are bench.py's tiny 80x60 JPEG crops of a few photos (so ~45 near-duplicate
pairs per source, as look-alike datasets have), expanded with its TINY_RECIPE at
`--times 2 --workers 2`. The resident memory of the process tree is sampled every 50 ms:
summed over the tree, the largest process, and the main process alone. The bytes a source
adds are the slope between two sizes. Only the first run is measured (bench.py's
`peak_memory` also times no-op reruns).

    python benchmarks/memory.py --sources 1000 10000 100000 --work /path/with/room

`--keep` leaves the corpora in the work folder for another run (100,000 take minutes to make).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench

MB = 1024 * 1024


def corpus(work: Path, sources: int) -> Path:
    root = work / f"tiny{sources}"
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        bench.make_corpus(root, sources, (80, 60), bench.SOURCE_QUALITY, seed=1)
        bench.settle(root)
        (root / ".complete").touch()  # hidden: augment skips it
    return root


def first_run(work: Path, sources: int, times: int) -> dict[str, float]:
    """Peaks in MB (summed over the process tree, largest process, main process) and the
    run's seconds."""
    src = corpus(work, sources)
    recipe = work / "tiny.yaml"
    recipe.write_text(bench.TINY_RECIPE)
    out = work / f"tiny{sources}-out"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "augment", "expand", str(src), str(out)]
    command += ["--times", str(times), "--workers", "2", "--recipe", str(recipe)]
    peaks, _, seconds = bench.run_sampled(command)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "summed": peaks["summed"],
        "largest": peaks["largest"],
        "main": peaks["main"],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--work", type=Path, help="where the corpora go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the corpora for another run")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="augment-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'sources':>8} {'summed MB':>10} {'largest MB':>11} {'main MB':>8} {'s':>6}")
    done: list[tuple[int, dict[str, float]]] = []
    try:
        for sources in sorted(args.sources):
            peaks = first_run(work, sources, args.times)
            done.append((sources, peaks))
            print(
                f"{sources:>8,} {peaks['summed']:>10.0f} {peaks['largest']:>11.0f} "
                f"{peaks['main']:>8.0f} {peaks['seconds']:>6.0f}",
                flush=True,
            )
    finally:
        if not args.keep:
            for sources in args.sources:
                shutil.rmtree(work / f"tiny{sources}", ignore_errors=True)
    for (a, pa), (b, pb) in itertools.pairwise(done):
        per = (pb["main"] - pa["main"]) * MB / (b - a)
        print(f"main process, {a:,} -> {b:,} sources: {per:,.0f} bytes a source")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
