"""The worker of a sharded run (`--output-format webdataset|parquet`): one executor shard is
one output shard, written straight into its file (augment/writers/shards.py), never as
loose images, and committed with its records last.

A source is all in its shard or not at all: when one turns out unusable after some of its
outputs were added, the shard is begun again without it (rare: a transform that fails on
one draw; a source that cannot be read fails before its first output). The shard's inputs
digest (`shard_inputs`) is what a rerun compares to keep a committed shard as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from augment.model import Rejected
from augment.stages.manifest import Record
from augment.stages.plan import SourceTask, content_id
from augment.stages.rendered import Rendered
from augment.stages.worker import RunContext, ShardResult, Worker
from augment.writers.shards import Placement, ShardFile, ShardLayout

if TYPE_CHECKING:
    from augment.stores.store import Store

SHARD_INPUTS_FORMAT = 1  # bumped when what a shard's inputs digest covers changes


class _Again(Exception):
    """A source was rejected after some of its outputs went into the shard."""


def task_digest(task: SourceTask) -> bytes:
    """What a task's outputs are made from: the source (path and content) and every
    output's name, seed and partners. Output names derive from the recipe, seed and content
    (augment/stages/plan.py), so equal digests mean equal bytes."""
    original = task.original
    digest = hashlib.sha256(f"{original.path}\0{content_id(original)}\0{task.split}".encode())
    for job in task.outputs:
        partners = [] if job.mix is None else [job.mix.partner, *job.mix.tiles]
        names = "\0".join(p.path for p in partners)
        digest.update(f"\1{job.path}\0{job.variant}\0{job.seed}\0{names}".encode())
    return digest.digest()


def shard_inputs(layout: ShardLayout, name: str, tasks: Iterable[bytes]) -> str:
    """A shard's inputs digest: its name, format and its tasks' digests, in order."""
    digest = hashlib.sha256(f"{SHARD_INPUTS_FORMAT}\0{layout.output_format}\0{name}".encode())
    for task in tasks:
        digest.update(task)
    return digest.hexdigest()


class ShardWorker(Worker):
    """`Worker`, with each output added to the shard it belongs to."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx)
        self._shard: ShardFile | None = None
        self._source: Store | None = None

    def run(self, shard: list[SourceTask]) -> ShardResult:
        layout = self.ctx.layout
        assert layout is not None and shard
        name = layout.shard_of(shard[0].split, shard[0].original.path)
        inputs = shard_inputs(layout, name, map(task_digest, shard))
        left_out: dict[str, Rejected] = {}
        while True:
            result = ShardResult()
            self._shard = ShardFile(
                self.ctx.out, name, layout.output_format, inputs, self._placement()
            )
            try:
                self._fill(shard, left_out, result)
            except _Again:
                self._shard.discard()
                reason = result.rejected[-1]  # what _run_task found, before taking back
                left_out[reason.path] = reason
                continue
            except BaseException:
                self._shard.discard()
                raise
            self._shard.commit(result.rejected)
            self._partners.clear()
            self._tiles.clear()
            return result

    def _placement(self) -> Placement | None:
        """Where the shards go: OUT's folder (None), or its store (a store run)."""
        layout = self.ctx.layout
        if layout is None or layout.store is None:
            return None
        from augment.writers.store_shards import StorePlacement  # fsspec only for a store

        return StorePlacement(layout.store)

    def source_bytes(self, rel: str) -> bytes:
        """Through the store when SRC is one (each worker reads its own sources: on a
        cluster no node has SRC as files); the caller checks the sha256 ingest took."""
        layout = self.ctx.layout
        if layout is None or layout.source is None:
            return super().source_bytes(rel)
        if self._source is None:
            from augment.stores.store import Store  # fsspec only for a store SRC

            self._source = Store(layout.source)
        try:
            return self._source.read(rel)
        except FileNotFoundError as exc:
            raise OSError(f"{layout.source}/{rel}: not in the store") from exc

    def _fill(
        self, shard: list[SourceTask], left_out: dict[str, Rejected], result: ShardResult
    ) -> None:
        self._partners.clear()
        for task in shard:
            reason = left_out.get(task.original.path)
            if reason is not None:
                result.rejected.append(reason)
                result.unmade += len(task.outputs)
                continue
            self._run_task(task, result)
            result.samples += len(result.records)
            result.records.clear()  # the shard's records file holds them

    def _store(self, record: Record, item: Rendered, encoded: bytes) -> Record:
        assert self._shard is not None
        mask = item.mask if item.annotation is not None else None
        self._shard.add(record, encoded, mask)
        return {}  # the shard's records file holds it: a source's 10^5 outputs are not held

    def _take_back(self, records: list[Record]) -> None:
        if records:  # already in the shard: begun again without this source
            raise _Again


def worker_for(ctx: RunContext) -> Worker:
    """The worker a run needs: one that writes shards, or files."""
    return ShardWorker(ctx) if ctx.layout is not None else Worker(ctx)
