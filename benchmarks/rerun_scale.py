"""What a no-op rerun of `augment expand` costs at scale, as a command and in-process.

    python benchmarks/rerun_scale.py                    # 10,000 tiny sources, 5 reruns each way
    python benchmarks/rerun_scale.py --sources 1000
    python benchmarks/rerun_scale.py --profile prof.out # and a cProfile of one rerun command

The corpus is bench.py's peak-memory one (80x60 JPEGs, its tiny recipe, --times 2
--workers 2), made once. The first run is timed as a command; then the same command again
(nothing changed), and the same call in this process: medians of wall seconds, and of CPU
seconds (the children's for a command). The target: a rerun command <= 3% of the first run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench.py sits in the script's folder
from bench import SOURCE_QUALITY, TINY_RECIPE, compile_tree, make_corpus, settle

from augment.model import ExpandOptions
from augment.run import expand

TARGET = 0.03


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command`."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, children_cpu() - cpu


def timed_call(corpus: Path, out: Path, options: ExpandOptions) -> tuple[float, float]:
    cpu, started = time.process_time(), time.perf_counter()
    summary = expand(corpus, out, options)
    assert summary.written == 0, summary.written
    return time.perf_counter() - started, time.process_time() - cpu


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reruns", type=int, default=5, help="reruns timed each way")
    parser.add_argument("--profile", type=Path, help="write a cProfile of one rerun command")
    args = parser.parse_args(argv)
    compile_tree()  # the commands start as an installed package's do
    with tempfile.TemporaryDirectory(prefix="augment-rerun-scale-") as tmp:
        root = Path(tmp)
        corpus = make_corpus(root / "corpus", args.sources, (80, 60), SOURCE_QUALITY, seed=1)
        settle(corpus)
        recipe = root / "tiny.yaml"
        recipe.write_text(TINY_RECIPE)
        out = root / "out"
        command = [sys.executable, "-m", "augment", "expand", str(corpus), str(out), "--quiet"]
        command += ["--times", str(args.times), "--workers", str(args.workers)]
        command += ["--recipe", str(recipe)]
        first = timed_command(command)
        commands = medians([timed_command(command) for _ in range(args.reruns)])
        options = ExpandOptions(times=args.times, recipe=str(recipe), workers=args.workers)
        calls = medians([timed_call(corpus, out, options) for _ in range(args.reruns)])
        if args.profile is not None:
            profiled = [sys.executable, "-m", "cProfile", "-o", str(args.profile), *command[1:]]
            subprocess.run(profiled, check=True, stdout=subprocess.DEVNULL)
    print(f"{args.sources} sources x {args.times}, --workers {args.workers}")
    print(f"first run (command)   {first[0]:8.3f} s wall {first[1]:8.3f} s CPU")
    for name, (wall, cpu) in (("rerun, command", commands), ("rerun, in-process", calls)):
        print(
            f"{name:<21} {wall:8.3f} s wall {cpu:8.3f} s CPU   "
            f"{wall / first[0]:6.1%} / {cpu / first[1]:6.1%} of the first run"
        )
    verdict = "met" if commands[0] <= TARGET * first[0] else "MISSED"
    print(f"target: rerun command <= {TARGET:.0%} of the first run (wall): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
