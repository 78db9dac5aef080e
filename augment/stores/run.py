"""`expand` with SRC or OUT in object storage: lock OUT with a lease, decide from listings
whether anything changed, run the ordinary pipeline on a local working copy, publish.

Everything a rerun decides from lives in the store, never on this machine: the lease, the
shard records (commit markers) and `.augment/store-run.json`, which a complete run writes
last: the digest of its inputs (the tool, the recipe, the options, SRC's listing), the
ETag -> sha256 of the sources it read (and, by ETag, what an ingest from the listing took of
each: augment/stores/listed.py), and the listing of every object it wrote. A rerun
whose inputs digest and OUT listing both match returns without reading a source or
writing an object. A run with work removes that file first and writes it again at its end,
so that a run killed in between leaves none (its next run is a full one).

The run itself is the local one, in a temporary folder, so its outputs and manifest are
byte-identical to a local run's by construction; publishing then skips every shard already
committed, which is how a killed run resumes.

The local working copy is not kept: a run that has anything to do makes every output
again locally (pixel work, no requests) and writes only what the store lacks. Keeping
that work on a cluster of machines is plan (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augment.errors import AugmentError, OutputError
from augment.layout import HEADER_NAME, MANIFEST_NAME, STATE_DIR
from augment.model import ExpandOptions, ExpandSummary, Phase, Rejected
from augment.stores.lease import LEASE_NAME, Lease
from augment.stores.listed import ListedIngest, reads_from_listing
from augment.stores.publish import (
    OUTPUT_MARK,
    RUN_NAME,
    Published,
    check_ours,
    publish,
    publish_beside_shards,
)
from augment.stores.sources import Source, listing, open_source, stage, staged_path
from augment.stores.store import Entry, Store
from augment.stores.url import StoreUrl, is_url

if TYPE_CHECKING:
    from augment.stages.executor import Executor

RUN_FORMAT = 1


def expand_stores(
    src: str | Path,
    out: str | Path,
    options: ExpandOptions,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    phase: Phase | None = None,
) -> ExpandSummary:
    """`augment.expand` where SRC, OUT or both are store URLs."""
    from augment.run import expand

    src, out = str(src), str(out)
    if not is_url(src) and not is_url(out):
        return expand(Path(src), Path(out), options, executor, progress, on_plan, phase)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="augment-store-") as work:

        def local_run(local_src: Path, local_out: Path) -> ExpandSummary:
            try:
                return expand(local_src, local_out, options, executor, progress, on_plan, phase)
            except AugmentError as exc:  # said of SRC and OUT, not of the working copy
                named = {Path(work, "src"): _source_url(src), local_out: out}
                exc.args = (_renamed(str(exc), named),)
                raise

        try:
            summary = _run(src, out, options, Path(work), local_run)
        except store_errors() as exc:
            raise OutputError(
                f"object storage ({src} -> {out}): {exc}; check the URLs, the credentials and "
                "the endpoint (the AWS_* variables for s3://), then rerun the same command to "
                "resume"
            ) from exc
    summary.seconds = time.perf_counter() - started
    return summary


def _run(
    src: str,
    out: str,
    options: ExpandOptions,
    work: Path,
    local_run: Callable[[Path, Path], ExpandSummary],
) -> ExpandSummary:
    source = open_source(src)
    # A local OUT beside a store SRC is a file:// store: its reruns are decided from the
    # listings too, without reading a source (a local run's state would see a new working
    # copy of SRC each time, and read it all).
    store = Store(out if is_url(out) else Path(out).resolve().as_uri())
    _check_apart(src, store.url)
    if options.layout != "folders":
        _check_shared(source.store if is_url(src) else None, store)
    with contextlib.ExitStack() as guard:
        if not is_url(out):  # and the lock a local run takes, so that the two exclude
            from augment.run import lock_output

            lock_output(Path(out), guard)
        lease = guard.enter_context(Lease(store))
        summary = _store_run(source, src, store, options, lease, work, local_run)
    if not is_url(out):
        summary.out = Path(out)
    return summary


def _source_url(src: str) -> str:
    """What the staged folder stands for: SRC, or the folder of a labels file SRC names
    (the local run names SRC's files relative to it)."""
    return open_source(src).store.url if is_url(src) else src  # a local SRC is not staged


def _renamed(message: str, named: dict[Path, str]) -> str:
    for path, url in named.items():
        message = message.replace(str(path), url)
    return message


def store_errors() -> tuple[type[BaseException], ...]:
    """What the store's libraries raise when it cannot be reached or refuses: s3fs turns
    S3's answers into OSError, botocore raises its own for a connection or credentials."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


def _store_run(
    source: Source,
    src: str,
    store: Store,
    options: ExpandOptions,
    lease: Lease,
    work: Path,
    local_run: Callable[[Path, Path], ExpandSummary],
) -> ExpandSummary:
    there = {e.path: e for e in store.list()}  # one listing of OUT decides
    check_ours(store, there, options.force)  # before any work
    last = _read_run(store) if RUN_NAME in there else None
    inputs = inputs_digest(source, options)
    if last is not None and last.get("inputs") == inputs and _unchanged(there, last):
        return _unchanged_summary(store, last)
    known = last.get("sources", {}) if last is not None else {}
    if last is not None:  # from here OUT is not the last run's: no rerun may trust it
        store.delete(RUN_NAME)
    listed = None
    if is_url(src) and options.layout != "folders" and reads_from_listing(source):
        # No local copy: ingest reads each source once through the store (stores/listed.py).
        seen = last.get("ingested", {}) if last is not None else {}
        listed = ListedIngest(source, known, options.near_duplicates >= 0, seen)
        read, local_src = listed.read, work / "src"
        local_src.mkdir()
    elif is_url(src):
        read = stage(source, work / "src", known)
        local_src = staged_path(source, work / "src")
    else:
        read, local_src = {}, Path(src)
    seed_last_run(store, work / "out")
    last_written = [str(w[0]) for w in last.get("written", [])] if last is not None else []
    if options.layout != "folders":  # the workers write the shards to the store themselves
        shard_source = source if is_url(src) else None
        summary = _sharded_run(shard_source, store, lease, local_src, work, local_run, listed)
        lease.check()  # before the header files: a run that lost its lease writes no more
        done = publish_beside_shards(store, work / "out", summary, last_written)
    else:
        summary = local_run(local_src, work / "out")
        done = publish(store, work / "out", lease, options.force, last_written)
    written = _written_listing(store, done.kept)
    state = {
        "format": RUN_FORMAT,
        "inputs": inputs,
        "sources": dict(sorted({**known, **read}.items())),
        # What the ingest from the listing took of each image, by ETag: a rerun with work
        # takes an unchanged source's from here instead of reading it (stores/listed.py).
        **({"ingested": dict(sorted(listed.ingested.items()))} if listed is not None else {}),
        "written": written,
        "summary": _summary_fields(summary),
    }
    lease.check()
    # Not sorted: the summary's classes and splits keep the order a full run reports them in.
    store.put(RUN_NAME, json.dumps(state, indent=1).encode("utf-8"))
    return _as_published(summary, store, done)


def _sharded_run(
    source: Source | None,
    store: Store,
    lease: Lease,
    local_src: Path,
    work: Path,
    local_run: Callable[[Path, Path], ExpandSummary],
    listed: ListedIngest | None = None,
) -> ExpandSummary:
    """The local run, its shards and records written to (and read from) the store by the
    workers and the driver (augment/sharded_run.py's `store_target`); with a store SRC, the
    workers read their sources there too, and with `listed` so does the driver's ingest
    (no local copy of SRC). Only the header files are written locally."""
    from augment.sharded_run import StoreTarget, store_target
    from augment.stages.ingest import listed_source

    if not any(e.path != LEASE_NAME for e in store.list(STATE_DIR)):
        taken = [f for f in ("shards", "records") if store.list(f)]
        if taken:  # --force beside foreign objects: nothing of theirs replaced or removed
            raise OutputError(
                f"output {store.url} already holds {taken[0]}/, where augment would write "
                "its shards; --force never overwrites objects augment did not write: choose "
                "another prefix"
            )
        # Ours from the first shard on: a killed first run's shards are resumed, not refused.
        store.put(OUTPUT_MARK, b'{"sharded": true}\n')
    url = source.store.url if source is not None else None
    target = StoreTarget(store.url, url, lease.check)
    token = store_target.set(target)
    listing = listed_source.set(listed)
    try:
        return local_run(local_src, work / "out")
    finally:
        listed_source.reset(listing)
        store_target.reset(token)


def seed_last_run(store: Store, folder: Path) -> None:
    """The last run's header and manifest, where the local run looks for them: it keeps
    the last run's splits (sticky, as a local rerun does) and names the outputs it replaces.
    Its outputs are not copied: the local run makes them again (see the module docstring)."""
    for name in (HEADER_NAME, MANIFEST_NAME):
        try:
            data = store.read(name)
        except FileNotFoundError:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def inputs_digest(source: Source, options: ExpandOptions) -> str:
    """What the store run is made from: the tool, the recipe's text, every option that can
    change what is written, and SRC's listing (path, size, ETag)."""
    from augment.recipe.source import read_recipe
    from augment.rerun.uptodate import tool_identity

    doc = {
        "tool": tool_identity(),
        "recipe": read_recipe(options.recipe).text,
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "workers"},
        "source": [source.name, *listing(source)],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _written_listing(store: Store, kept: set[str]) -> list[list[object]]:
    """The objects of this run as the listing shows them (never another writer's, which
    a later run would otherwise take for its own to remove)."""
    return [[e.path, e.size, e.etag] for e in store.list() if e.path in kept]


def _unchanged(there: dict[str, Entry], last: dict[str, Any]) -> bool:
    """Every object the last run left is there as it left it (from the listing: no reads)."""
    written = last.get("written")
    if not isinstance(written, list) or not written:
        return False
    now = {path: [e.path, e.size, e.etag] for path, e in there.items()}
    return all(now.get(str(w[0])) == w for w in written)


def _read_run(store: Store) -> dict[str, Any] | None:
    try:
        state = json.loads(store.read(RUN_NAME))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # damaged: the full run writes it again
    if not isinstance(state, dict) or state.get("format") != RUN_FORMAT:
        return None
    return state


def _summary_fields(summary: ExpandSummary) -> dict[str, Any]:
    return {
        "counts": summary.counts,
        "originals": summary.originals,
        "train_originals": summary.train_originals,
        "rejected": [[r.path, r.reason] for r in summary.rejected],
    }


def _unchanged_summary(store: Store, last: dict[str, Any]) -> ExpandSummary:
    fields = last["summary"]
    summary = ExpandSummary(
        out=StoreUrl(store.url),
        counts=fields["counts"],
        originals=fields["originals"],
        written=0,
        reused=0,
        removed=0,
        rejected=[Rejected(path, reason) for path, reason in fields["rejected"]],
        train_originals=fields["train_originals"],
        fast_path=True,
    )
    summary.reused = summary.total
    return summary


def _as_published(summary: ExpandSummary, store: Store, done: Published) -> ExpandSummary:
    """The local run's summary, told of the store: what was written there, not locally."""
    summary.out = StoreUrl(store.url)
    summary.fast_path = False
    summary.written = done.outputs
    summary.reused = summary.total - done.outputs
    summary.removed = done.removed
    return summary


def _check_shared(source: Store | None, out: Store) -> None:
    """Sharded outputs are read and written by the worker processes: a memory:// store,
    private to one process, would give each its own."""
    for store in (source, out):
        if store is not None and store.protocol == "memory":
            raise OutputError(
                f"{store.url}: a memory:// store is private to one process, and sharded "
                "outputs are written and read by the worker processes; use file:// or s3://"
            )


def _check_apart(src: str, out: str) -> None:
    """OUT inside SRC (or SRC inside OUT) would list the run's own outputs as sources."""
    a, b = src.rstrip("/") + "/", out.rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        raise OutputError(f"output {out} and source {src} overlap; choose apart prefixes")
