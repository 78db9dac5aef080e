"""Where `augment expand`'s bookkeeping goes: CPU per output of each part of an in-process run
(`--workers 1`, near-duplicate grouping off), next to the same pixel work without the tool.

    python benchmarks/bookkeeping.py                 # 200 sources x 5 on tmpfs, 5 runs
    python benchmarks/bookkeeping.py --runs 3 --out-root /tmp

The corpus and the "same work, no tool" loop are bench.py's (seeded as expand seeds, so
both make the same bytes). Each part is timed by wrapping the function that does it with
`time.process_time`; the wrappers themselves add ~0.01 ms per output to the whole run, and
nested parts are counted in their callers too (the totals are marked). Figures in
docs/performance.md ("Bookkeeping").
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench.py, beside this file
import bench  # it puts this tree's augment first on sys.path

import augment.full_run as full_run
import augment.run as run
import augment.stages.reconcile as reconcile
import augment.stages.worker as worker
from augment.imaging.threads import one_cv2_thread
from augment.recipe.build import load_recipe

# (module, function name, what it is): the parts of a run, outermost first.
PARTS: list[tuple[Any, str, str]] = [
    (run, "_expand", "the whole run (total)"),
    (worker.Worker, "run", "the worker (total)"),
    (worker.Worker, "augment", "recipe per variant, with its applied parameters"),
    (worker, "encode", "encode"),
    (worker, "decode", "decode"),
    (worker, "apply_preprocess", "preprocess"),
    (worker, "write_atomic", "atomic write"),
    (worker, "dumps", "record as JSON (journal line, manifest row)"),
    (worker, "output_record", "output record (its sha256)"),
    (worker, "write_journal", "journal file per piece"),
    (worker, "fused_pipeline", "pipelines built"),
    (worker, "applied_params", "applied parameters for the manifest"),
    (worker, "sha256_bytes", "worker's check that a source is unchanged"),
    (run, "ingest", "ingest"),
    (full_run, "load", "recipe built and checked"),
    (full_run, "plan_outputs", "plan made (its jobs are made as pieces are asked for)"),
    (full_run, "add_written", "rows of finished pieces (stamps)"),
    (full_run, "_write_outputs", "end of run (total)"),
    (full_run, "write_records", "  manifest.jsonl, stale outputs, orphans"),
    (full_run, "remove_orphans", "  orphan sweep"),  # a tree before the one walk
    (reconcile, "_sweep", "  orphan sweep, listing the folders"),
    (full_run, "remember_run", "  the rerun snapshot of OUT"),
    (full_run, "save_state", "  state"),
    (full_run, "write_header", "  augment.json"),
    (full_run, "write_dataset_card", "  dataset card"),
]


def wrap_parts(spent: dict[str, float]) -> None:
    for owner, name, label in PARTS:
        if not hasattr(owner, name):
            continue  # an older tree: the part is elsewhere
        setattr(owner, name, _timed(getattr(owner, name), label, spent))


def _timed(fn: Callable[..., Any], label: str, spent: dict[str, float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - started

    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out-root", type=Path, default=Path("/dev/shm"))
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="augment-bookkeeping-") as tmp,
        tempfile.TemporaryDirectory(prefix="augment-bookkeeping-", dir=args.out_root) as out,
    ):
        corpus = bench.make_corpus(Path(tmp), args.sources, bench.SOURCE_SIZE, bench.SOURCE_QUALITY)
        s = bench.Setup(
            files=bench.corpus_files(corpus),
            corpus=corpus,
            recipe=load_recipe("default"),
            recipe_arg="default",
            times=args.times,
            quality=95,
            workers=1,
            scratch=Path(out),
        )
        bench.reuse_image_buffers()
        spent: dict[str, float] = defaultdict(float)
        wrap_parts(spent)
        target = Path(out) / "out"
        baseline, runs = [], []
        with one_cv2_thread():
            bench.timed(lambda o: bench.run_expand(s, o, 1, False), target)  # warm-up
            spent.clear()
            for _ in range(args.runs):
                baseline.append(bench.timed(lambda o: bench.same_work_no_tool(s, o), target)[1])
                runs.append(bench.timed(lambda o: bench.run_expand(s, o, 1, False), target)[1])
    per = 1e3 / s.outputs
    base, whole = statistics.median(baseline) * per, statistics.median(runs) * per
    print(f"CPU ms per output, {s.outputs} outputs, medians of {args.runs} runs\n")
    print(f"| same work, no tool | {base:.3f} |\n| expand, parts wrapped | {whole:.3f} |")
    print(f"| overhead | {whole / base - 1:+.1%} |\n\n| part | ms per output |\n|---|---:|")
    for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {seconds / args.runs * per:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
