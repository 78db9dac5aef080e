"""Executors: where workers run. Each takes the run's context and an iterable of shards and
yields one ShardResult per shard, in any order. The worker code is the same under each, so
outputs are byte-identical whichever runs them; a distributed engine (Ray, Spark) is one more
function with this signature.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from typing import Protocol

from augment.plan import SourceTask
from augment.worker import RunContext, ShardResult, Worker


class Executor(Protocol):
    def __call__(
        self, ctx: RunContext, shards: Iterable[list[SourceTask]]
    ) -> Iterator[ShardResult]: ...


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_process(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
    worker = Worker(ctx)
    for shard in shards:
        yield worker.run(shard)


_worker: Worker | None = None  # one per worker process, built by the pool's initializer


def _init_worker(ctx: RunContext) -> None:
    global _worker
    import signal

    import cv2

    # Ctrl-C is the main process's to handle: it stops the pool and leaves OUT consistent.
    # A worker that also took it would print a traceback from inside the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Each process is one lane of parallelism; OpenCV's own threads would oversubscribe.
    cv2.setNumThreads(1)
    _worker = Worker(ctx)


def _run_shard(shard: list[SourceTask]) -> ShardResult:
    assert _worker is not None
    return _worker.run(shard)


def multiprocessing_pool(workers: int) -> Executor:
    """A process pool of `workers` processes (1 runs in this process, without a pool)."""

    def run(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
        if workers <= 1:
            yield from in_process(ctx, shards)
            return
        # forkserver: workers start from a clean, single-threaded process (fork after
        # threads exist can deadlock), and the imports are paid once, not per worker.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["augment.worker"])
        pool = context.Pool(workers, initializer=_init_worker, initargs=(ctx,))
        try:
            yield from pool.imap_unordered(_run_shard, shards)
            pool.close()
        finally:
            pool.terminate()
            pool.join()

    return run
