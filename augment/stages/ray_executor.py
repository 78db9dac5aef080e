"""The Ray executor (`--executor ray`): the same shards and the same worker as the local pool,
run as Ray tasks, so the outputs and the manifest are byte-identical to `--workers N`.

Ray is an optional extra (`pip install "augment[ray]"`) and is imported only when this
executor runs, so a rerun proven unchanged never starts it. Without an address a private
local cluster of `workers` CPUs is started on the loopback address, for this run only, and
shut down after it (`address="local"`: Ray would otherwise join a cluster it finds on the
machine or in RAY_ADDRESS). With an address, the run joins that cluster, and only then.

What the user sees is the tool's own behaviour, whoever runs the worker:
- a task's error is raised here as the error the worker raised (an `OutputError` for a full
  disk, say), without Ray's remote traceback;
- a worker process that dies (killed, out of memory) has its shard run again by Ray (the
  worker writes each file atomically and the same bytes again, so a retried shard leaves
  the same files);
- on Ctrl-C (or any error) the tasks still running are stopped before this returns (a
  private cluster is shut down with them; on a joined one they are cancelled, their
  processes killed): `full_run` then writes the journal of what was made, and no task
  writes into OUT after that.

Every node must see SRC and OUT at the same paths (a shared filesystem): the tasks read
and write them directly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from augment.errors import AugmentError
from augment.files import remove_temp_files

if TYPE_CHECKING:  # the worker loads albumentations: only a run with work needs it
    from augment.stages.executor import Executor
    from augment.stages.plan import SourceTask
    from augment.stages.worker import RunContext, ShardResult, Worker

# A killed worker's shard is run again this many times before the run stops with its error.
SHARD_RETRIES = 3
# Shards sent ahead per CPU: one running, one queued, so no CPU waits for the driver.
_IN_FLIGHT_PER_CPU = 2
# How long cancelled tasks of a joined cluster are waited for (a local one is shut down).
_CANCEL_WAIT_S = 10.0
# The object store holds shards and results (records, never pixels): a small one will do,
# and Ray's default (30% of memory) would reserve shared memory others could use.
_OBJECT_STORE_BYTES = 128 * 1024 * 1024


class RayExecutorError(AugmentError):
    """`--executor ray` without Ray installed, a cluster that cannot be reached, or a shard
    whose worker process died on every attempt."""


# One Worker per Ray worker process and run: its pipelines are built once, not per shard.
_workers: dict[str, Worker] = {}


def _run_shard(run: str, ctx: RunContext, shard: list[SourceTask]) -> ShardResult:
    """A Ray task: one shard, by the very worker the local pool runs."""
    worker = _workers.get(run)
    if worker is None:
        import cv2

        from augment.rerun import heap
        from augment.stages.shard_worker import worker_for

        cv2.setNumThreads(1)  # one CPU per task, as in the pool's processes
        heap.reuse_image_buffers()  # a Ray worker process does only this run's pixel work
        _workers.clear()
        worker = _workers[run] = worker_for(ctx)
    return worker.run(shard)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayExecutorError(
            "--executor ray needs Ray: pip install 'augment[ray]' (or use --executor local)"
        ) from None
    return ray


def _connect(ray: Any, workers: int, address: str | None) -> None:
    # The tool speaks for its workers: Ray's own start-up notices are not the user's concern.
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            ray.init(
                address="local",
                num_cpus=workers,
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                object_store_memory=_OBJECT_STORE_BYTES,
                **quiet,
            )
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise RayExecutorError(f"cannot start or reach {where}: {exc}") from None


def ray_executor(workers: int, address: str | None = None) -> Executor:
    """Run shards as Ray tasks: on a private local cluster of `workers` CPUs, or on the
    running cluster at `address` (all of its CPUs). RayExecutorError at once if Ray is not
    installed; it is imported, and the cluster started, only when there is work to run."""
    if importlib.util.find_spec("ray") is None:
        _import_ray()

    def run(ctx: RunContext, shards: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
        ray = _import_ray()
        if ray.is_initialized():
            raise RayExecutorError("Ray is already connected in this process: not joining it")
        stopped_early = True
        try:
            _connect(ray, workers, address)
            yield from _results(ray, ctx, shards, own_cluster=address is None)
            stopped_early = False
        finally:
            ray.shutdown()
            if stopped_early and address is None:
                # The private cluster's processes end with it, any task among them: what a
                # task killed mid-write left is a temporary file, and no task runs any more.
                remove_temp_files(ctx.out)

    return run


def _results(
    ray: Any, ctx: RunContext, shards: Iterable[list[SourceTask]], own_cluster: bool
) -> Iterator[Any]:
    task = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES, retry_exceptions=False)(_run_shard)
    ctx_ref = ray.put(ctx)
    run = ctx_ref.hex()  # unique to this run: a reused Ray worker never keeps an old Worker
    ahead = _IN_FLIGHT_PER_CPU * max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending = iter(shards)
    in_flight: list[Any] = []
    try:
        for shard in pending:
            in_flight.append(task.remote(run, ctx_ref, shard))
            if len(in_flight) >= ahead:
                break
        while in_flight:
            # A timeout keeps a waiting Ctrl-C deliverable.
            ready, in_flight = ray.wait(in_flight, num_returns=1, timeout=0.5)
            for ref in ready:
                yield _get(ray, ref)
                following = next(pending, None)
                if following is not None:
                    in_flight.append(task.remote(run, ctx_ref, following))
    finally:
        # A private cluster is shut down with its tasks (see `run`): cancelling them first
        # is what a joined cluster needs, and Ray 2.60's core can abort the driver when a
        # force-cancelled task's reply arrives ("Check failed ... submissible_tasks_").
        # A killed task (a retried shard, or one cancelled here) can leave a temporary file;
        # once no task runs any more, none is someone's write in progress.
        if not own_cluster and _cancel(ray, in_flight):
            remove_temp_files(ctx.out)


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # The worker's own exception, as the local pool would raise it: no remote traceback.
        cause = exc.cause
        raise cause.with_traceback(None) from None
    except ray.exceptions.WorkerCrashedError:
        raise RayExecutorError(
            f"a Ray worker process died running a shard, {SHARD_RETRIES + 1} attempts in a "
            "row (out of memory?); rerun the same command to resume"
        ) from None


def _cancel(ray: Any, refs: list[Any]) -> bool:
    """Stop the tasks still running (their processes killed); whether all have stopped."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    if not refs:
        return True
    try:
        _, running = ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_WAIT_S)
    except Exception:
        return False
    return not running
