"""How much a no-op rerun of `augment expand` costs against the first run.

    python benchmarks/rerun.py                 # 200 sources x 5, 5 rounds, in-process
    python benchmarks/rerun.py --command       # the same as commands (start-up included)

Each round clears OUT, times a first run, then a rerun of the same call (nothing changed),
and prints medians, the ratio and the rerun's phases. The corpus is bench.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import SOURCE_QUALITY, SOURCE_SIZE, make_corpus  # benchmarks/, the script's folder

from augment.imaging.threads import one_cv2_thread
from augment.model import ExpandOptions
from augment.run import expand


def command(corpus: Path, out: Path, options: ExpandOptions) -> list[str]:
    return [
        *(sys.executable, "-m", "augment", "expand", str(corpus), str(out), "--quiet"),
        *("--times", str(options.times), "--val", "0", "--test", "0", "--format", "jpg"),
        *("--quality", str(options.quality), "--recipe", options.recipe),
        *("--workers", str(options.workers)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reruns", type=int, default=3, help="no-op reruns timed per round")
    parser.add_argument("--command", action="store_true", help="time the command, not the call")
    args = parser.parse_args(argv)
    options = ExpandOptions(
        times=args.times, val=0, test=0, workers=args.workers, output_format="jpg", quality=95
    )
    firsts: list[float] = []
    reruns: list[float] = []
    phases: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="augment-rerun-") as tmp:
        corpus = make_corpus(Path(tmp) / "corpus", args.sources, SOURCE_SIZE, SOURCE_QUALITY)
        # A source modified less than 2 s before a run is read again by the next (the racy
        # rule in augment/state.py): a corpus made a moment ago is not what a rerun meets.
        time.sleep(2.1)
        out = Path(tmp) / "out"
        for _ in range(args.rounds):
            shutil.rmtree(out, ignore_errors=True)
            for n in range(1 + args.reruns):
                started = time.perf_counter()
                if args.command:
                    subprocess.run(command(corpus, out, options), check=True)
                else:
                    with one_cv2_thread() if args.workers == 1 else contextlib.nullcontext():
                        summary = expand(corpus, out, options)
                    if n:
                        assert summary.written == 0, summary.written
                        for phase, seconds in summary.timings.items():
                            phases.setdefault(phase, []).append(seconds)
                (reruns if n else firsts).append(time.perf_counter() - started)
    first, rerun = statistics.median(firsts), statistics.median(reruns)
    kind = "command" if args.command else "in-process"
    print(f"{args.sources} sources x {args.times}, --workers {args.workers}, {kind}")
    print(f"first run     median {first * 1000:8.1f} ms  ({len(firsts)} runs)")
    print(f"no-op rerun   median {rerun * 1000:8.1f} ms  ({len(reruns)} runs)")
    print(f"rerun / first        {rerun / first:8.1%}")
    for phase, seconds in phases.items():
        print(f"  {phase:<12} median {statistics.median(seconds) * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
