"""The Ray executor's cost against the local pool: start-up, and overhead per output on a
warm cluster. Needs the `ray` extra.

    python benchmarks/ray_executor.py [--times 8] [--workers 2] [--repeats 3]

For each sample set with the mixup recipe, into fresh folders: the local pool
(`--workers N`); Ray on a cluster already running (a private one on 127.0.0.1, started
once by a helper process and joined with `--ray-address`; one warm-up run first, so its
worker processes exist); and Ray starting its own local cluster (`--executor ray`, what a
user without a cluster gets). Medians of `--repeats` runs. Connecting to the warm cluster
and disconnecting is timed on its own (each run pays it once); the overhead per output is
(warm Ray - connect - local pool) / outputs. The outputs are checked byte-identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.executor import Executor, multiprocessing_pool
from augment.stages.ray_executor import ray_executor

ROOT = Path(__file__).resolve().parent.parent
SETS = {"digits": ROOT / "sample_data" / "digits", "textures": ROOT / "sample_data" / "textures"}

# Holds a private cluster open for the benchmark, prints its address, and shuts it down
# when its stdin closes (never `ray stop`: that would stop every cluster of the machine).
_HOLDER = """
import sys, ray
ray.init(address="local", num_cpus=int(sys.argv[1]), _node_ip_address="127.0.0.1",
         include_dashboard=False, log_to_driver=False, logging_level=40)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".augment" not in p.relative_to(root).parts
    }


def timed_run(
    src: Path, work: Path, options: ExpandOptions, executor: Executor
) -> tuple[float, int, dict[str, bytes]]:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = expand(src, out, options, executor=executor)
    return time.perf_counter() - start, summary.written, tree(out)


def median_run(
    make: Callable[[], Executor], src: Path, work: Path, options: ExpandOptions, repeats: int
) -> tuple[float, int, dict[str, bytes]]:
    runs = [timed_run(src, work, options, make()) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), runs[0][1], runs[0][2]


def connect_seconds(address: str, repeats: int) -> float:
    import ray

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ray.init(address=address, log_to_driver=False, logging_level=40)
        ray.shutdown()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    options = ExpandOptions(times=args.times, recipe="mixup", workers=args.workers)
    # Ray 2.60 starts local clusters with token authentication; a driver joining one by
    # its address authenticates only when told to (the token is in ~/.ray/auth_token).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(args.workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    address = holder.stdout.readline().strip()
    connect = connect_seconds(address, args.repeats)
    print(f"connecting to the warm cluster and disconnecting: {connect:.2f} s (median)")
    print(f"--times {args.times} --recipe mixup, {args.workers} workers, median of {args.repeats}")
    print(
        "| set | outputs | local pool s | Ray, warm cluster s | overhead per output ms |"
        " Ray, own cluster s | same bytes |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for name, src in SETS.items():
                local_s, outputs, local = median_run(
                    lambda: multiprocessing_pool(args.workers), src, work, options, args.repeats
                )
                timed_run(src, work, options, ray_executor(args.workers, address))  # warm-up
                warm_s, _, warm = median_run(
                    lambda: ray_executor(args.workers, address), src, work, options, args.repeats
                )
                own_s, _, own = median_run(
                    lambda: ray_executor(args.workers), src, work, options, 1
                )
                per_output = (warm_s - connect - local_s) / outputs * 1000
                same = local == warm == own
                print(
                    f"| {name} | {outputs} | {local_s:.2f} | {warm_s:.2f} | {per_output:.2f} | "
                    f"{own_s:.2f} | {same} |",
                    flush=True,
                )
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


if __name__ == "__main__":
    main()
