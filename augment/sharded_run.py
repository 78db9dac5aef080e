"""The full run of `expand --output-format webdataset|parquet`: the workers write shards.

hold out -> plan -> assign each task to its stable shard (augment/writers/shards.py) ->
keep the committed shards whose inputs are unchanged -> the workers write the others
(augment/stages/shard_worker.py), each committed with its records last -> remove the shards
no longer made -> the manifest assembled from every shard's records in path order ->
`augment.json` (with the shard counts) and the state.

Resume is by shard: an interrupted run leaves its committed shards, which the next run
keeps; a shard without its records is rebuilt. No image is written as a file, so OUT holds
each image once, in its shard. Imported, like augment/full_run.py, only for a run with work.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augment.defaults import default_workers
from augment.errors import ManifestError, OutputError
from augment.files import (
    ChangedFile,
    check_write_folders,
    output_error,
    remove_temp_files,
    source_folders,
)
from augment.full_run import (
    LoadedRecipe,
    Made,
    Progress,
    RunSetup,
    build_header,
    check_recipe_fits,
    check_same_source,
    in_output_format,
    load,
    plan_outputs,
    prepare_output,
    run_context,
)
from augment.layout import HEADER_NAME, MANIFEST_NAME, STATE_DIR
from augment.model import ExpandSummary
from augment.recipe.annotated import BOX_RULES
from augment.rerun.spill import SortedSpill
from augment.rerun.state import save_state
from augment.rerun.uptodate import remember_run
from augment.stages.executor import Executor, multiprocessing_pool
from augment.stages.holdout import check_same_holdout, hold_out
from augment.stages.ingest import listed_source
from augment.stages.manifest import dumps, read_header, write_header
from augment.stages.plan import Plan, SourceTask
from augment.stages.shard_worker import shard_inputs, task_digest
from augment.summary import check_train_made, class_counts, summarize
from augment.writers.shards import (
    RECORDS_DIR,
    SHARDS_DIR,
    ShardLayout,
    committed,
    remove_other_shards,
    shard_counts,
    shard_records,
)

if TYPE_CHECKING:
    from augment.writers.store_shards import StoreShards


@dataclass(frozen=True)
class StoreTarget:
    """A store run's shards: OUT's store URL, and SRC's when the workers read it there."""

    out: str
    source: str | None
    check: Callable[[], None]  # raises once the run's lease is lost: no more shards then


# Set by a store run (augment/stores/run.py) around the run it makes: the workers then write
# the shards and records to the store, and the driver reads them there; the rest of OUT (the
# header, the manifest) is written locally and published after.
store_target: ContextVar[StoreTarget | None] = ContextVar("store_target", default=None)


@dataclass
class _Shards:
    """The run's shards: each one's tasks (plan indices, in plan order) and inputs digest."""

    layout: ShardLayout
    store: StoreShards | None = None  # a store OUT: its shards as listed
    members: dict[str, list[int]] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: Counter[str] = field(default_factory=Counter)


def assign_shards(plan: Plan, output_format: str, size: int, recorded: Any) -> _Shards:
    """One pass over the plan: each task's shard (by its source's path), its digest."""
    found: list[tuple[int, str, str, bytes, int]] = []
    per_split: Counter[str] = Counter()
    for index, task in enumerate(plan.tasks()):
        found.append((index, task.split, task.original.path, task_digest(task), len(task.outputs)))
        per_split[task.split] += len(task.outputs)
    layout = ShardLayout(output_format, shard_counts(per_split, size, recorded), size)
    target = store_target.get()
    shards = _Shards(layout)
    if target is not None:
        from augment.writers.store_shards import StoreShards

        shards.layout = dataclasses.replace(layout, store=target.out, source=target.source)
        shards.store = StoreShards(target.out)
    digests: dict[str, list[bytes]] = {}
    for index, split, path, digest, outputs in found:
        name = shards.layout.shard_of(split, path)
        shards.members.setdefault(name, []).append(index)
        digests.setdefault(name, []).append(digest)
        shards.outputs[name] += outputs
    for name, parts in digests.items():
        shards.inputs[name] = shard_inputs(shards.layout, name, parts)
    return shards


def run(
    setup: RunSetup,
    loaded: LoadedRecipe | None,
    guard: contextlib.ExitStack,
    executor: Executor | None,
    progress: Progress,
) -> ExpandSummary:
    """Bring a sharded OUT up to date (the steps of full_run.run, by shard)."""
    out, options, dataset, state = setup.out, setup.options, setup.dataset, setup.state
    loaded = loaded or load(setup.recipe_file, options)
    check_recipe_fits(loaded.recipe, dataset)
    loaded = in_output_format(setup, loaded)
    warnings: list[str] = []
    header = _previous_header(out, warnings)
    check_same_holdout(header, dataset, options)
    check_same_source(out, header, dataset, options.layout)
    listing = listed_source.get()  # a store SRC ingested from its listing: hashed there
    hashes = listing.hashes if listing is not None else None
    grouping, holdout = hold_out(dataset, options, header, phase=progress.phase, hashes=hashes)
    recorded = header.get("shards")
    del header
    dataset.originals = grouping.originals
    plan = plan_outputs(dataset, holdout, loaded, options)
    setup.balanced_objects = plan.balanced_objects
    _prepare_shards(setup, plan)
    shards = assign_shards(plan, options.layout, options.shard_size, recorded)
    made = Made()
    todo = _still_to_make(setup, shards, made)
    progress.lap("plan")
    to_write = sum(shards.outputs[name] for name in todo)
    if progress.on_plan is not None:
        progress.on_plan(to_write)
    _execute(setup, loaded, plan, shards, todo, executor, progress, made)
    progress.lap("execute")
    if shards.store is None:
        removed = remove_other_shards(out, shards.members)
    else:
        if todo:
            shards.store.relist()
        removed = shards.store.remove_others(shards.members)
    # By path, each once (a bad mixing partner is reported once); held on disk past a few
    # thousand (a labels file may reject millions of rows).
    rejected = dataset.rejected.by_path(plan.rejected, made.rejected)
    state.sources.keep_only(
        {o.path for o in dataset.originals}
        | {path for path, _, _ in dataset.rejected.entries() if path in state.sources.entries}
    )
    complete = made.written + made.unmade == to_write and not made.retry
    counts, dropped = _write_manifest(setup, shards, guard)
    header = build_header(
        dataset,
        loaded.recipe,
        options,
        loaded.fingerprints,
        holdout.split_of,
        counts,
        rejected,
        grouping.hashes,
    )
    _finish(setup, header, shards.layout, dropped, grouping.found, complete)
    progress.lap("write")
    summary = summarize(out, options, dataset, grouping, holdout, counts, rejected)
    summary.written, summary.removed = made.written, removed
    summary.reused = sum(shards.outputs.values()) - to_write
    summary.sources_read = state.sources.reads
    summary.dropped_objects = dict(sorted(dropped.items()))
    summary.balanced_objects = setup.balanced_objects
    check_train_made(summary, options)
    summary.warnings = warnings
    return summary


def _previous_header(out: Path, warnings: list[str]) -> dict[str, Any]:
    """The last run's header, as full_run reads it (a damaged one in an OUT of augment's is
    taken as absent, with a warning); its manifest is not read: the shards' records are."""
    if not (out / HEADER_NAME).exists():
        return {}
    try:
        return read_header(out, rejected=False)  # not used: maybe millions
    except ManifestError as exc:
        if not (out / STATE_DIR).is_dir():  # no state: someone else's file, kept
            raise
        warnings.append(f"{exc}; taken as absent: the holdout is made anew")
        return {}


def _prepare_shards(setup: RunSetup, plan: Plan) -> None:
    """As for folders (full_run.prepare_output), and OUT/shards/ too: never a folder of the
    source, and what an interrupted shard left removed."""
    out, root = setup.out, setup.dataset.root
    taken = [f for f in (SHARDS_DIR, RECORDS_DIR) if (out / f).exists()]
    if setup.foreign and taken:  # --force: nothing of theirs replaced
        raise OutputError(
            f"output {out} already holds {taken[0]}/, where augment would write its shards; "
            "--force never overwrites files augment did not write: move it or choose "
            "another folder"
        )
    check_write_folders(out, [SHARDS_DIR, RECORDS_DIR], source_folders(root), root)
    prepare_output(setup, plan)
    try:
        remove_temp_files(out, [SHARDS_DIR, RECORDS_DIR])
    except OSError as exc:
        raise output_error(out, exc, "clean the shards folder in") from exc


def _still_to_make(setup: RunSetup, shards: _Shards, made: Made) -> list[str]:
    """The shards not committed from these inputs; the kept ones' rejections go to `made`."""
    todo = []
    for name in sorted(shards.members):
        if shards.store is not None:
            kept = shards.store.committed(name, shards.inputs[name])
        else:
            kept = committed(setup.out, name, shards.inputs[name])
        if kept is None:
            todo.append(name)
        else:
            made.rejected.extend(kept)
    return todo


def _finish(
    setup: RunSetup,
    header: dict[str, Any],
    layout: ShardLayout,
    dropped: Counter[str],
    clusters: list[list[str]],
    complete: bool,
) -> None:
    """`augment.json` (with the shard counts the next run keeps) and the rerun state."""
    dataset = setup.dataset
    header["shards"] = layout.to_dict()
    if dataset.task != "classification":
        header["annotations"] = {"format": dataset.kind, "names": dataset.names, **BOX_RULES}
        header["annotations"]["dropped"] = dict(sorted(dropped.items()))
    if setup.balanced_objects:
        header["balance"] = {"objects": setup.balanced_objects}
    write_header(setup.out, header)
    if setup.inputs is not None:
        remember_run(setup.out, setup.state, setup.inputs, [], clusters, complete)
    save_state(setup.out, setup.state, [])


def _execute(
    setup: RunSetup,
    loaded: LoadedRecipe,
    plan: Plan,
    shards: _Shards,
    todo: list[str],
    executor: Executor | None,
    progress: Progress,
    made: Made,
) -> None:
    """The shards still to make, one executor shard each. On Ctrl-C the committed ones stay
    (the next run keeps them); an unfinished one leaves only a temporary, removed then."""
    if not todo:
        return
    if shards.store is not None:  # each upload is then create-only (store_shards.py)
        shards.store.uncommit(todo)
    ctx = run_context(setup, loaded, layout=shards.layout)
    pool = executor or multiprocessing_pool(setup.options.workers or default_workers())

    def work() -> Iterator[list[SourceTask]]:
        for name in todo:
            yield [plan.task(index) for index in shards.members[name]]

    target = store_target.get()
    for result in pool(ctx, work()):
        if target is not None:  # a store run that lost its lease starts no more shards
            target.check()
        made.rejected.extend(result.rejected)
        made.written += result.samples
        made.unmade += result.unmade
        made.retry = made.retry or any(r.retry for r in result.rejected)
        if progress.progress is not None:
            progress.progress(result.samples)


def _write_manifest(
    setup: RunSetup, shards: _Shards, guard: contextlib.ExitStack
) -> tuple[dict[str, dict[str, int]], Counter[str]]:
    """OUT/manifest.jsonl from the shards' records, in path order (rewritten only if it
    changes). Returns the outputs per split and class, and the objects dropped per class."""
    lines: SortedSpill[str] = guard.enter_context(SortedSpill())
    pairs: Counter[tuple[str, str]] = Counter()
    dropped: Counter[str] = Counter()
    for name in sorted(shards.members):
        if shards.store is not None:
            records = shards.store.records(name)
        else:
            records = shard_records(setup.out, name)
        for record in records:
            line = dumps(record)
            lines.add(record["path"], line, len(line))
            pairs[record["split"], record["label"]] += 1
            annotation = record.get("annotation")
            if isinstance(annotation, dict):
                dropped.update(annotation.get("dropped", {}))
    manifest = ChangedFile(setup.out / MANIFEST_NAME)
    try:
        for _, line in lines:
            manifest.write((line + "\n").encode("utf-8"))
    except BaseException:
        manifest.discard()
        raise
    manifest.commit()
    return class_counts(pairs), dropped
