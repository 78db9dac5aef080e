"""Executors: where workers run. Each takes the run's context and an iterable of shards and
yields one ShardResult per shard, in any order. The worker code is the same under each, so
outputs are byte-identical whichever runs them; a distributed engine (Ray, Spark) is one more
function with this signature.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from multiprocessing.pool import Pool
from typing import Protocol

from augment.imaging.threads import one_cv2_thread
from augment.rerun import heap as heap
from augment.stages.plan import SourceTask
from augment.stages.shard_worker import worker_for
from augment.stages.worker import RunContext, ShardResult, Worker


class Executor(Protocol):
    def __call__(
        self, ctx: RunContext, shards: Iterable[list[SourceTask]]
    ) -> Iterator[ShardResult]: ...


def in_process(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
    # The heap is tuned only in processes the tool owns (its workers, the command's own):
    # a program that calls expand() keeps its allocator as it was.
    worker = worker_for(ctx)
    with one_cv2_thread():
        for shard in shards:
            yield worker.run(shard)


_worker: Worker | None = None  # one per worker process, built by the pool's initializer

# A run of fewer shards than this is done in this process: starting the pool would cost
# more than it could save. Forked workers are up in ~5 ms, less than a shard's work; workers
# that import albumentations afresh need ~0.7 s, a few hundred outputs' work.
MIN_SHARDS_FOR_POOL = {"fork": 2, "forkserver": 8, "spawn": 8}


def _init_worker(ctx: RunContext) -> None:
    global _worker
    import signal

    import cv2

    # Ctrl-C, and the terminal's hang-up, are the main process's to handle: it stops the
    # pool and leaves OUT consistent. A worker that also took them would print a traceback
    # from inside the pool. SIGTERM is how the pool stops a worker: it ends it at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    cv2.setNumThreads(1)
    heap.reuse_image_buffers()  # inherited when forked; a spawned worker needs its own
    _worker = worker_for(ctx)


def die_with_parent() -> None:
    """End this worker the moment the main process is gone, even killed with SIGKILL: an
    orphan would go on writing into OUT and print on a terminal that is no longer the
    run's. Linux's parent-death signal; elsewhere a worker stops at its next shard, when
    the pool's pipe is closed."""
    import ctypes
    import os
    import signal

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent or parent == 1:  # the parent died before prctl took effect
        os._exit(1)


def _run_shard(shard: list[SourceTask]) -> ShardResult:
    assert _worker is not None
    return _worker.run(shard)


def _is_ready(_: int) -> bool:
    return _worker is not None


def start_method() -> str:
    """How pool processes start: `fork` on Linux, `forkserver` or `spawn` elsewhere.

    A forked worker has albumentations, OpenCV and the recipe already loaded: it is ready in
    milliseconds, where a fresh interpreter needs ~0.7 s to import them, as long as a
    one-second run. Forking is safe here because it happens in the main thread before this
    run starts any thread of its own (the near-duplicate hashing threads, at ingest or after
    it, have ended), and OpenCV's and OpenBLAS's thread pools reset themselves in the
    child. macOS system libraries are not fork-safe, so other systems start workers from a
    clean process.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


@contextlib.contextmanager
def _shared_with_forked_workers(forking: bool) -> Iterator[None]:
    """Workers forked inside this block share this process's memory as far as can be.

    glibc first hands back the heap pages it kept (a forked worker's RSS would count them
    again), and the objects made so far are frozen out of the garbage collector's reach in
    the workers: a collection there writes to every object it examines and so copies every
    page it touches, ~20 MB a process measured (PSS) at 1,000 sources. This process
    collects them again once the run that forked the workers has ended.
    """
    if not forking:
        yield
        return
    heap.return_free_heap()
    with heap.objects_kept_out_of_collections():
        yield


class _SharedShards:
    """One iterator of shards that this process and the pool both draw from."""

    def __init__(self, shards: Iterable[list[SourceTask]]) -> None:
        self._it = iter(shards)
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[list[SourceTask]]:
        return self

    def __next__(self) -> list[SourceTask]:
        with self._lock:
            return next(self._it)


@contextlib.contextmanager
def _deaf_to_ctrl_c(forking: bool) -> Iterator[None]:
    """While workers are forked, SIGINT is ignored here, so they are born ignoring it: a
    Ctrl-C reaches the whole process group, and one landing in a worker before its
    initializer ran would print a traceback on the user's terminal. Only the main thread
    may change a handler; the fork itself takes milliseconds."""
    if not forking or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    # And born with SIGTERM's default action: with this process's handler, which does not
    # end a process, a worker the pool ends at once (its next fork refused by a process
    # limit) would never end, and the pool would wait for it forever. SIGTERM is held back
    # over the fork, so a child has it pending, not lost, until _forked_child has put the
    # default action in place; here, a SIGTERM meanwhile reaches the handler when the
    # block ends.
    global _forking
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    _forking = True
    try:
        yield
    finally:
        _forking = False
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        signal.signal(signal.SIGINT, previous)


_forking = False  # inside _deaf_to_ctrl_c: a child forked now is a pool worker


def _forked_child() -> None:
    global _forking
    if _forking:
        _forking = False
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


os.register_at_fork(after_in_child=_forked_child)


class _BackgroundPool:
    """A process pool that joins this process's work once its processes are up.

    Forked workers are up at once, and are started right here. Workers that import
    albumentations afresh take about a second to start; they are started in a thread, so
    that this process works meanwhile and a shorter run never waits for them.

    Each pool process has one shard running and one queued. When a shard's result comes
    back, the next shard is sent at once (from the pool's result thread), so the pool never
    waits for this process to finish its own shard and collect the result; a deeper queue
    would leave this process waiting for a backlog at the end of the run.
    """

    def __init__(self, processes: int, ctx: RunContext, shards: _SharedShards) -> None:
        self._lock = threading.Lock()
        self._pool: Pool | None = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._shards = shards
        self._in_flight = 0  # sent to the pool and not yet taken by this process
        self._done: queue.SimpleQueue[ShardResult | BaseException] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if start_method() == "fork":
            self._start(processes, ctx)  # never fork from a second thread
        else:
            self._thread = threading.Thread(target=self._start, args=(processes, ctx), daemon=True)
            self._thread.start()

    def _start(self, processes: int, ctx: RunContext) -> None:
        context = multiprocessing.get_context(start_method())
        if context.get_start_method() == "forkserver":
            # With several workers the imports are paid once, in the server; with one,
            # preloading would only keep a second full copy of them in memory.
            context.set_forkserver_preload(["augment.stages.worker"] if processes > 1 else [])
        try:
            forked = context.get_start_method() == "fork"
            with _shared_with_forked_workers(forked), _deaf_to_ctrl_c(forked):
                pool = context.Pool(processes, initializer=_init_worker, initargs=(ctx,))
            # Pool() returns before its processes have imported anything; a shard handed to
            # one now would wait there while this process could have done it. A worker
            # answers only once its initializer has run.
            pool.map(_is_ready, range(processes), chunksize=1)
        except BaseException as exc:  # reported to the consuming thread
            with self._lock:
                self._error = exc
            return
        with self._lock:
            if self._abandoned:
                pool.terminate()
                pool.join()
                return
            self._pool = pool
        for _ in range(2 * processes):
            self._send_next()

    def _send_next(self) -> None:
        with self._lock:
            if self._abandoned or self._pool is None:
                return
            try:
                shard = next(self._shards)
            except StopIteration:
                return
            except BaseException as exc:  # raised where the results are taken, not lost here
                self._in_flight += 1
                self._done.put(exc)
                return
            # Counted before this process can see the result: when the count is back to
            # zero, nothing is on its way.
            self._in_flight += 1
            self._pool.apply_async(
                _run_shard, (shard,), callback=self._arrived, error_callback=self._done.put
            )

    def _arrived(self, result: ShardResult) -> None:
        self._send_next()  # first, so that the count never drops to zero in between
        self._done.put(result)

    def _take(self, timeout: float | None) -> ShardResult | None:
        try:
            # A timeout keeps a waiting Ctrl-C deliverable.
            item = self._done.get(timeout=timeout) if timeout else self._done.get_nowait()
        except queue.Empty:
            return None
        with self._lock:
            self._in_flight -= 1
        if isinstance(item, BaseException):
            raise item
        return item

    def started(self) -> bool:
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._pool is not None

    def ready_results(self) -> Iterator[ShardResult]:
        """Results the pool has finished, without waiting for more."""
        while (result := self._take(None)) is not None:
            yield result

    def remaining_results(self) -> Iterator[ShardResult]:
        """Every result still to come (call once no shard is left to hand out); abandons a
        pool that has not started yet."""
        while True:
            with self._lock:
                if self._pool is None:
                    self._abandoned = True
                    # A pool that could not start (fork refused: a process limit, no
                    # memory) only means this process did every shard alone.
                    if self._error is not None and not isinstance(self._error, OSError):
                        raise self._error
                    return
                if self._in_flight == 0:
                    return
            result = self._take(0.5)
            if result is not None:
                yield result

    def close(self, finished: bool) -> None:
        with self._lock:
            self._abandoned = True
            pool = self._pool
        if pool is None and self._thread is not None and self._thread.is_alive():
            # Still starting: the thread shuts the pool down once it exists. The run does not
            # wait for that, but the interpreter does before it exits, so that no process or
            # named semaphore of the pool outlives it.
            atexit.register(self._thread.join)
        if pool is not None:
            if finished:
                pool.close()
            pool.terminate()
            pool.join()


def multiprocessing_pool(workers: int) -> Executor:
    """`workers` lanes of work: this process and a pool of `workers - 1` processes.

    This process works on shards from the start and the pool joins in once its processes
    are up (1 runs in this process only, without a pool).
    """

    def run(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
        pending = iter(shards)
        minimum = MIN_SHARDS_FOR_POOL[start_method()]
        head = list(itertools.islice(pending, minimum))
        if workers <= 1 or len(head) < minimum:
            yield from in_process(ctx, itertools.chain(head, pending))
            return
        shared = _SharedShards(itertools.chain(head, pending))
        # One OpenCV thread here from before the fork to the pool's end: a worker forked
        # while this process's OpenCV pool has threads (a caller's earlier OpenCV work)
        # inherits that pool without its threads, and its first OpenCV call waits for them
        # forever; the pool may fork a replacement worker at any time while it runs.
        with one_cv2_thread():
            pool = _BackgroundPool(workers - 1, ctx, shared)
            finished = False
            try:
                worker = worker_for(ctx)
                for shard in shared:
                    yield worker.run(shard)
                    yield from pool.ready_results()
                yield from pool.remaining_results()
                finished = True
            finally:
                pool.close(finished)

    return run
