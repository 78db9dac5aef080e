"""How `augment expand` scales from 1 to 2 workers, and how much of a run is serial (issue 21).

    python benchmarks/scaling.py --out-root /dev/shm            # 2,000 sources x 5 = 10,000
    python benchmarks/scaling.py --sources 200 --times 5 --repeats 3

The corpus is bench.py's (crops of scikit-image's photos, 500x375 JPEG quality 90), made at
run time. Each round runs `expand` in this process (the library call, start-up excluded) at
1 and at `--workers` workers into a fresh OUT, interleaved, with the default recipe, --val 0
--test 0 (so every source makes `--times` outputs) and near-duplicate grouping on; with
`--commands`, also as the command a user types (start-up included). Medians are printed.

Where a run's wall time goes, from the run's own phases (`ExpandSummary.timings`) and its
progress callbacks: reading the sources (walk, sha256, header), hashing them for near
duplicates, the rest of the holdout and the plan (with the reconciliation against OUT), the
execution (the pool's start and end included), and the writing of manifest.jsonl,
augment.json, metadata.csv and the state. Everything but the execution runs in one process
while the others wait: that is the serial share.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# This tree's augment (an installed one would be measured otherwise), and bench.py beside.
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench import SOURCE_QUALITY, SOURCE_SIZE, compile_tree, cpu_now, make_corpus  # noqa: E402

from augment.model import ExpandOptions  # noqa: E402
from augment.rerun.heap import reuse_image_buffers  # noqa: E402
from augment.run import expand  # noqa: E402

STAGES = ("ingest", "hashing", "holdout+plan", "execute", "write", "other")


@dataclass
class Clock:
    """When the run's phases began and ended (wall, this process's CPU, its main thread's
    CPU), from the callbacks `expand` calls (in the main thread)."""

    marks: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = (time.perf_counter(), time.process_time(), time.thread_time())

    def phase(self, name: str, total: int) -> Callable[[int], None]:
        self.mark(name)
        return lambda _: self.mark(f"{name} end")

    def between(self, start: str, end: str, clock: int = 0) -> float:
        """Seconds from `start` to `end`: 0 wall, 1 this process's CPU, 2 its main thread's."""
        if start not in self.marks or end not in self.marks:
            return 0.0
        return self.marks[end][clock] - self.marks[start][clock]


def run_once(corpus: Path, out: Path, workers: int, times: int) -> dict[str, float]:
    """One run's wall, CPU and stage seconds."""
    options = ExpandOptions(times=times, val=0, test=0, workers=workers, output_format="jpg")
    clock = Clock()
    cpu, children = cpu_now(), _children_cpu()
    clock.mark("start")
    summary = expand(
        corpus,
        out,
        options,
        progress=lambda _: clock.mark("executed"),
        on_plan=lambda _: clock.mark("plan"),
        phase=clock.phase,
    )
    clock.mark("end")
    wall, cpu, children = clock.between("start", "end"), cpu_now() - cpu, _children_cpu() - children
    assert summary.written == summary.total, (summary.written, summary.total)
    laps = summary.timings
    hashing = clock.between("hashing", "hashing end")
    stages = {
        "ingest": laps["ingest"],
        "hashing": hashing,
        "holdout+plan": laps["plan"] - hashing,
        "execute": laps["execute"],
        "write": laps["write"],
    }
    stages["other"] = wall - sum(stages.values())
    # CPU of this process up to the plan: every stage before the execution runs here.
    before = clock.between("start", "plan", 1)
    # The wall a quiet machine would take, from CPU seconds (another program's work on the
    # cores stretches the wall, much less the CPU): before the execution, phase by phase,
    # the main thread's CPU or the process's spread over the cores, whichever is longer;
    # the execution, its busiest lane (this process, or a pool process); the rest here.
    steps = [m for m in ("start", "hashing", "hashing end", "plan") if m in clock.marks]
    quiet = sum(
        max(clock.between(a, b, 2), clock.between(a, b, 1) / workers)
        for a, b in itertools.pairwise(steps)
    )
    lanes = max(1, workers - 1)
    quiet_execute = max(clock.between("plan", "executed", 1), children / lanes)
    quiet_after = clock.between("executed", "end", 1)
    return {
        "wall": wall,
        "cpu": cpu,
        "cpu before": before,
        "quiet wall": quiet + quiet_execute + quiet_after,
        "quiet before": quiet,
        "quiet after": quiet_after,
        "outputs": summary.written,
        **stages,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's, once it has ended
    return usage.ru_utime + usage.ru_stime


def run_command(corpus: Path, out: Path, workers: int, times: int) -> dict[str, float]:
    command = [sys.executable, "-m", "augment", "expand", str(corpus), str(out), "--quiet"]
    command += ["--times", str(times), "--val", "0", "--test", "0", "--format", "jpg"]
    command += ["--workers", str(workers)]
    cpu, started = cpu_now(), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=HERE.parent)
    return {"wall": time.perf_counter() - started, "cpu": cpu_now() - cpu}


def clear(out: Path) -> None:
    subprocess.run(["rm", "-rf", str(out)], check=True)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def report(results: dict[str, dict[str, float]], workers: int, commands: bool) -> str:
    one, many = results["1"], results[str(workers)]
    lines = [f"outputs per run: {one['outputs']:.0f}", ""]
    lines += ["| stage | 1 worker s | " + f"{workers} workers s |", "|---|---:|---:|"]
    lines += [f"| {s} | {one[s]:.3f} | {many[s]:.3f} |" for s in STAGES]
    lines += [f"| **wall** | {one['wall']:.3f} | {many['wall']:.3f} |"]
    lines += [f"| CPU | {one['cpu']:.3f} | {many['cpu']:.3f} |"]
    lines += [f"| CPU before the execution | {one['cpu before']:.3f} | {many['cpu before']:.3f} |"]
    lines += [
        f"| quiet-machine wall, from CPU | {one['quiet wall']:.3f} | {many['quiet wall']:.3f} |",
        f"| the same, before the execution | {one['quiet before']:.3f} | "
        f"{many['quiet before']:.3f} |",
        f"| the same, after it | {one['quiet after']:.3f} | {many['quiet after']:.3f} |",
    ]
    serial = many["wall"] - many["execute"]
    quiet_serial = (many["quiet before"] + many["quiet after"]) / many["quiet wall"]
    lines += [
        "",
        f"in-process: {workers} workers = {one['wall'] / many['wall']:.2f}x one worker (wall)",
        f"serial share of the {workers}-worker wall: {serial:.3f} s = "
        f"{100 * serial / many['wall']:.0f}% (all but the execution)",
        f"execution alone: {one['execute'] / many['execute']:.2f}x",
        f"from CPU seconds (a quiet machine's wall, estimated): "
        f"{one['quiet wall'] / many['quiet wall']:.2f}x, serial share {100 * quiet_serial:.0f}%",
        f"CPU per output: {1000 * one['cpu'] / one['outputs']:.3f} ms (1 worker), "
        f"{1000 * many['cpu'] / many['outputs']:.3f} ms ({workers} workers)",
    ]
    if commands:
        c1, cn = results["cli 1"], results[f"cli {workers}"]
        lines += [
            f"as commands: 1 worker {c1['wall']:.3f} s wall {c1['cpu']:.3f} s CPU; "
            f"{workers} workers {cn['wall']:.3f} s wall {cn['cpu']:.3f} s CPU; "
            f"{c1['wall'] / cn['wall']:.2f}x"
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--times", type=int, default=5, help="outputs per source (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="against 1 (default 2)")
    parser.add_argument("--commands", action="store_true", help="also time the commands")
    parser.add_argument("--out-root", type=Path, help="where OUT goes, e.g. /dev/shm")
    parser.add_argument("--corpus", type=Path, help="use this folder of class folders")
    args = parser.parse_args(argv)
    if args.commands:
        compile_tree()  # the commands start as an installed package's do
    reuse_image_buffers()  # as a command's own process does (augment/rerun/heap.py)
    with (
        tempfile.TemporaryDirectory(prefix="augment-scaling-") as tmp,
        tempfile.TemporaryDirectory(prefix="augment-scaling-out-", dir=args.out_root) as out_tmp,
    ):
        if args.corpus:
            corpus = args.corpus.resolve()
        else:
            print(f"making {args.sources} source JPEGs", file=sys.stderr, flush=True)
            corpus = make_corpus(Path(tmp) / "corpus", args.sources, SOURCE_SIZE, SOURCE_QUALITY)
        out = Path(out_tmp) / "out"
        # Untimed: the first run in a process imports the recipe's libraries.
        warm = make_corpus(Path(tmp) / "warm", 16, SOURCE_SIZE, SOURCE_QUALITY)
        run_once(warm, out, 1, args.times)
        load = os.getloadavg()  # another program's work slows the wall figures
        runs: dict[str, list[dict[str, float]]] = {}
        counts = sorted({1, args.workers})
        for r in range(args.repeats):
            print(f"  round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
            for workers in counts:
                clear(out)
                runs.setdefault(str(workers), []).append(run_once(corpus, out, workers, args.times))
                if args.commands:
                    clear(out)
                    runs.setdefault(f"cli {workers}", []).append(
                        run_command(corpus, out, workers, args.times)
                    )
        clear(out)
        results = {name: medians(r) for name, r in runs.items()}
        print(report(results, args.workers, args.commands))
        print(f"load average at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
