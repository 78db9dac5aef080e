"""The process pool: the same bytes as in-process work, whoever does each shard."""

from __future__ import annotations

import faulthandler
import gc
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import augment.full_run as build_module
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages import executor as executor
from augment.stages.executor import _BackgroundPool, _SharedShards, in_process
from augment.stages.plan import SourceTask
from augment.stages.worker import RunContext, ShardResult
from tests.helpers import DIGITS, file_tree


def pool_only(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
    """Every shard done by a 2-process pool (the default executor would let this process
    do a run this small alone, before the pool is up)."""
    pool = _BackgroundPool(2, ctx, _SharedShards(shards))
    deadline = time.monotonic() + 60
    while not pool.started():
        assert time.monotonic() < deadline, "the pool did not start within a minute"
        time.sleep(0.02)
    try:
        yield from pool.remaining_results()
    finally:
        pool.close(finished=True)


@pytest.mark.parametrize("method", ["fork", pytest.param("forkserver", marks=pytest.mark.slow)])
def test_pool_processes_make_the_same_bytes(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # Linux forks the workers; other systems start them from a clean process.
    monkeypatch.setattr(executor, "start_method", lambda: method)
    options = ExpandOptions(times=2, recipe=str(small_recipe), val=0.2, test=0)
    pooled = expand(DIGITS, tmp_path / "pool", options, executor=pool_only)
    expand(DIGITS, tmp_path / "inproc", options, executor=in_process)
    assert pooled.written == sum(sum(c.values()) for c in pooled.counts.values()) > 0
    assert file_tree(tmp_path / "pool") == file_tree(tmp_path / "inproc")


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards of 2 outputs and a pool for any run: many shards, so lanes take turns."""
    monkeypatch.setitem(executor.MIN_SHARDS_FOR_POOL, executor.start_method(), 1)
    monkeypatch.setattr(build_module, "OUTPUTS_PER_SHARD", 2)


@pytest.mark.usefixtures("small_shards")
def test_this_process_and_the_pool_share_the_work(tmp_path: Path, small_recipe: Path) -> None:
    # The pool (2 processes) joins this process mid-run; whichever lane does a shard, the
    # bytes are the same.
    options = ExpandOptions(times=2, recipe=str(small_recipe), val=0.2, test=0, workers=3)
    shared = expand(DIGITS, tmp_path / "shared", options)
    expand(DIGITS, tmp_path / "inproc", options, executor=in_process)
    assert shared.written > 0 and not shared.rejected
    assert file_tree(tmp_path / "shared") == file_tree(tmp_path / "inproc")


@pytest.mark.usefixtures("small_shards")
def test_a_failing_plan_is_raised_to_the_caller_not_lost_in_the_pool(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's result thread hands out the next shard; if making it raises, the error
    # must reach the run (and the run must end), not kill that thread and leave it waiting.
    real = build_module.shard_tasks

    def failing(tasks: Iterable[SourceTask], size: int) -> Iterator[list[SourceTask]]:
        for n, shard in enumerate(real(tasks, size)):
            if n == 6:
                raise RuntimeError("planning failed")
            yield shard

    monkeypatch.setattr(build_module, "shard_tasks", failing)
    options = ExpandOptions(times=2, recipe=str(small_recipe), val=0.2, test=0)
    # A regression would hang: end the test process with a traceback rather than CI's run.
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        with pytest.raises(RuntimeError, match="planning failed"):
            expand(DIGITS, tmp_path / "out", options, executor=pool_only)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_forked_workers_leave_the_objects_they_inherit_out_of_their_collections() -> None:
    """A collection in a forked worker would write to every object it inherited and copy
    each page it touched (~20 MB a worker, measured as PSS); this process collects as before."""
    with executor._shared_with_forked_workers(forking=True):
        pool = multiprocessing.get_context("fork").Pool(1)
    try:
        frozen_in_worker = pool.apply(gc.get_freeze_count)
    finally:
        pool.terminate()
        pool.join()
    assert frozen_in_worker > 1000
    assert gc.get_freeze_count() == 0


def _sigint_handler_name(_: int) -> str:
    import signal

    return repr(signal.getsignal(signal.SIGINT))


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the start method that inherits")
def test_forked_workers_are_born_ignoring_ctrl_c() -> None:
    # A Ctrl-C reaches the whole process group: a worker that is forked with this process's
    # handler and gets it before its initializer ran prints a traceback on the terminal.
    import multiprocessing
    import signal

    context = multiprocessing.get_context("fork")
    # As from a terminal, whatever this test run inherited (a script's background: ignored).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with executor._deaf_to_ctrl_c(True), context.Pool(1) as pool:
            born_with = pool.map(_sigint_handler_name, [0])[0]
        assert born_with == repr(signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored here
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.slow
def test_a_caller_that_used_opencv_threads_then_expands_with_workers_does_not_hang(
    tmp_path: Path,
) -> None:
    """A program (a notebook) that ran OpenCV on its own thread pool before calling
    expand(workers=2): a worker forked while that pool has threads inherits its state
    without the threads, and its first OpenCV call waited for them forever."""
    import subprocess

    program = f"""
import cv2, numpy as np
from pathlib import Path
from augment import expand, ExpandOptions
cv2.setNumThreads(4)  # the pool started whatever the machine's cores
image = np.zeros((2000, 2000, 3), np.uint8)
for _ in range(3):
    cv2.GaussianBlur(image, (31, 31), 0)
summary = expand(Path({str(DIGITS)!r}), Path({str(tmp_path / "out")!r}),
                 ExpandOptions(times=2, workers=2))
assert cv2.getNumThreads() == 4  # the caller's setting, as it was
print(summary.written)
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
