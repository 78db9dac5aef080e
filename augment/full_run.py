"""The full run of `expand`: hold out, plan every output, make the missing ones in worker
processes, remove the stale ones, and write the records, `augment.json` and the state.

`augment/run.py` decides whether a run is needed at all (a rerun proven unchanged is
not); this module, and with it albumentations, OpenCV, numpy and the worker pool, is only
imported when one is.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from augment import __version__
from augment.annotations.convert import converted_fingerprints, output_kind, previous_format
from augment.annotations.output import write_annotations
from augment.defaults import default_workers
from augment.errors import OutputError
from augment.files import check_write_folders, output_error, remove_temp_files, source_folders
from augment.imaging.digests import ImageHash
from augment.interrupts import refused_resource
from augment.layout import CLASSES_NAME, HEADER_NAME, MANIFEST_NAME, METADATA_NAME, STATE_DIR
from augment.model import Dataset, ExpandOptions, ExpandSummary, Phase, Rejected, in_path_order
from augment.recipe.annotated import check_recipe_for_task
from augment.recipe.build import Recipe, build_recipe
from augment.recipe.preprocess import check_output_size
from augment.recipe.source import RecipeFile
from augment.rerun.spill import SortedSpill
from augment.rerun.state import RunState, save_state
from augment.rerun.uptodate import remember_run
from augment.stages.duplicates import Grouping
from augment.stages.executor import Executor, multiprocessing_pool
from augment.stages.holdout import (
    SPLITS,
    Holdout,
    check_same_holdout,
    hold_out,
    holdout_entries,
    uses_source_split,
)
from augment.stages.manifest import (
    HEADER_FORMAT,
    RecordFiles,
    clear_journal,
    write_dataset_card,
    write_header,
)
from augment.stages.plan import Fingerprints, Plan, check_class_folders, class_folders, shard_tasks
from augment.stages.reconcile import (
    Previous,
    Reuse,
    Row,
    add_written,
    read_previous,
    reuse_done,
    write_interrupted,
    write_records,
)
from augment.stages.worker import RunContext
from augment.summary import Laps, check_train_made, class_counts, missing_classes, summarize
from augment.writers.shards import check_same_layout

OUTPUTS_PER_SHARD = 32  # a source's outputs too are split: each piece journaled when done


@dataclass
class RunSetup:
    """What `expand` has established before a full run: OUT checked and locked, the state
    and the source read."""

    out: Path
    options: ExpandOptions
    dataset: Dataset
    state: RunState
    inputs: str | None  # the digest of the run's inputs; None: a rerun is never proven
    foreign: bool  # OUT holds files augment did not write (--force)
    recipe_file: RecipeFile  # as read once for this run
    dropped: dict[str, int] = field(default_factory=dict)  # objects a transform dropped
    balanced_objects: dict[str, dict[str, int]] = field(default_factory=dict)  # the plan's
    kind: str = ""  # the output's annotation format (annotations/convert.py)
    previous_kind: str | None = None  # the one the last run wrote, if another
    hashes: dict[str, ImageHash] = field(default_factory=dict)  # sha256 -> pHash, at ingest


@dataclass
class Progress:
    """Where a run reports what it is doing."""

    lap: Laps
    progress: Callable[[int], None] | None = None  # n more outputs done
    on_plan: Callable[[int], None] | None = None  # the number of outputs to write, once
    phase: Phase | None = None  # the phases before (see augment.model.Phase)


@dataclass(frozen=True)
class LoadedRecipe:
    recipe: Recipe
    fingerprints: Fingerprints


@dataclass
class Made:
    """What the workers made of the jobs still to do."""

    written: int = 0
    unmade: int = 0  # left out for good (a rejection the same inputs give again)
    retry: bool = False  # a rejection whose cause may pass: the next run tries again
    rejected: list[Rejected] = field(default_factory=list)


def load(recipe_file: RecipeFile, options: ExpandOptions) -> LoadedRecipe:
    """The recipe, built and checked (a mistake in it fails here, naming the transform),
    with the fingerprints that name its outputs."""
    recipe = build_recipe(recipe_file)
    check_output_size(
        recipe.preprocess, options.output_format, options.max_pixels, str(recipe_file.path)
    )
    return LoadedRecipe(
        recipe,
        Fingerprints(
            preprocess=recipe.preprocess_fingerprint(options.output_format, options.quality),
            recipe=recipe.fingerprint(options.output_format, options.quality),
        ),
    )


def check_same_source(out: Path, header: Mapping[str, Any], dataset: Dataset, layout: str) -> None:
    """An OUT made from another source keeps that run's splits by path (sticky), which a
    new source's files of the same names would inherit: refused when none of its held-out
    originals (by sha256) is in this source. Nor are folders and shards mixed (`layout`)."""
    check_same_layout(header, layout)
    known = {h.get("sha256") for h in header.get("holdout", []) if isinstance(h, dict)}
    if known and dataset.originals and not any(o.sha256 in known for o in dataset.originals):
        raise OutputError(
            f"output {out} was made from another source: none of its {len(known)} originals "
            f"is in {dataset.root}; choose another output folder, or empty this one"
        )


def in_output_format(setup: RunSetup, loaded: LoadedRecipe) -> LoadedRecipe:
    """The output's annotation format chosen (annotations/convert.py), and the recipe's
    fingerprints keyed by it when it is not the input's."""
    dataset = setup.dataset
    setup.kind = output_kind(dataset, setup.options.annotations)
    fingerprints = converted_fingerprints(loaded.fingerprints, dataset.kind, setup.kind)
    return replace(loaded, fingerprints=fingerprints)


def run(
    setup: RunSetup,
    loaded: LoadedRecipe | None,
    guard: contextlib.ExitStack,
    executor: Executor | None,
    progress: Progress,
) -> ExpandSummary:
    """Bring OUT up to date: hold out → plan → reconcile with what is there → execute →
    write the records, the header and the state."""
    out, options, dataset, state = setup.out, setup.options, setup.dataset, setup.state
    loaded = loaded or load(setup.recipe_file, options)
    check_recipe_fits(loaded.recipe, dataset)
    loaded = in_output_format(setup, loaded)
    # A folder someone else filled (--force) has no earlier run: nothing is read from it.
    warnings: list[str] = []
    previous_header, previous = read_previous(out, warnings)
    guard.callback(previous.close)
    check_same_holdout(previous_header, dataset, options)
    check_same_source(out, previous_header, dataset, options.layout)
    setup.previous_kind = previous_format(previous_header)
    hashes, setup.hashes = setup.hashes, {}  # by path in grouping.hashes from here on
    grouping, holdout = hold_out(
        dataset, options, previous_header, phase=progress.phase, hashes=hashes
    )
    del previous_header, hashes  # an entry per original, not to be held through the run
    dataset.originals = grouping.originals
    plan = plan_outputs(dataset, holdout, loaded, options)
    setup.balanced_objects = plan.balanced_objects
    prepare_output(setup, plan)
    # This run's records by path (the reused ones now, the others as shards finish), and
    # the last run's that are not reused.
    rows: SortedSpill[Row] = guard.enter_context(SortedSpill())
    leftovers: SortedSpill[Previous] = guard.enter_context(SortedSpill())
    reuse = reuse_done(
        out, plan, loaded.fingerprints.recipe, previous, state.outputs, rows, leftovers
    )
    previous.close()
    progress.lap("plan")
    if progress.on_plan is not None:
        progress.on_plan(reuse.to_write)
    made = _execute(setup, loaded, plan, reuse, rows, leftovers, executor, progress)
    progress.lap("execute")

    # A bad mixing partner is reported once.
    # By path, each once (a bad mixing partner is reported once); held on disk past a few
    # thousand (a labels file may reject millions of rows).
    rejected = dataset.rejected.by_path(plan.rejected, made.rejected)
    # Sources rejected for their bytes keep their entry: a rerun need not read them again.
    state.sources.keep_only(
        {o.path for o in dataset.originals}
        | {path for path, _, _ in dataset.rejected.entries() if path in state.sources.entries}
    )
    # Complete: every planned output made, or left out for good; a rejection whose cause
    # may pass is tried again.
    complete = made.written + made.unmade == reuse.to_write and not made.retry
    counts, removed = _write_outputs(
        setup, loaded, holdout.split_of, rows, leftovers, rejected, grouping, complete
    )
    clear_journal(out)
    progress.lap("write")

    summary = summarize(out, options, dataset, grouping, holdout, counts, rejected)
    summary.written = made.written
    summary.reused = reuse.reused
    summary.removed = removed
    summary.sources_read = state.sources.reads
    summary.outputs_rehashed = reuse.rehashed
    summary.dropped_objects = dict(sorted(setup.dropped.items()))
    summary.balanced_objects = setup.balanced_objects
    check_train_made(summary, options)
    summary.warnings = warnings
    return summary


def plan_outputs(
    dataset: Dataset, holdout: Holdout, loaded: LoadedRecipe, options: ExpandOptions
) -> Plan:
    return Plan(
        dataset.originals,
        holdout.split_of,
        variants_per_class(dataset, options),
        loaded.fingerprints,
        options.seed,
        options.output_format,
        mix=loaded.recipe.mix,
        mix_size=loaded.recipe.preprocess.size,
        balance=options.balance,
    )


def prepare_output(setup: RunSetup, plan: Plan) -> None:
    """Before the first write: --force never overwrites what is there; the state folder
    marks OUT as an augment output before any image is written, so a first run that stops
    at any moment (killed, disk full) can be resumed without --force; what an interrupted
    write left is removed."""
    out = setup.out
    if setup.foreign:
        refuse_overwrites(out, (job.path for task in plan.tasks() for job in task.outputs))
    folders = class_folders(setup.dataset.classes)
    root = setup.dataset.root
    check_write_folders(out, [STATE_DIR, *folders], source_folders(root), root)
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
        remove_temp_files(out, [STATE_DIR, *SPLITS])
    except OSError as exc:
        raise output_error(out, exc, "create the output folder") from exc


def _execute(
    setup: RunSetup,
    loaded: LoadedRecipe,
    plan: Plan,
    reuse: Reuse,
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
    executor: Executor | None,
    progress: Progress,
) -> Made:
    """Make the outputs still to do; on Ctrl-C, journal what was made: the next run resumes."""
    out, options = setup.out, setup.options
    made = Made()
    if not reuse.to_write:
        return made
    ctx = run_context(setup, loaded)
    pool = executor or multiprocessing_pool(options.workers or default_workers())
    try:
        pieces = plan.tasks(reuse.todo, most=OUTPUTS_PER_SHARD)
        for result in pool(ctx, shard_tasks(pieces, OUTPUTS_PER_SHARD)):
            add_written(out, rows, result.records, result.lines)
            made.rejected.extend(result.rejected)
            made.written += len(result.records)
            made.unmade += result.unmade
            made.retry = made.retry or any(r.retry for r in result.rejected)
            if progress.progress is not None:
                progress.progress(len(result.records))
    except BaseException as exc:  # Ctrl-C, or a process limit met: what was made is kept
        if not isinstance(exc, KeyboardInterrupt) and refused_resource(exc) is None:
            raise
        pending = (job.path for task in plan.tasks(reuse.todo) for job in task.outputs)
        write_interrupted(out, rows, leftovers, pending, setup.state)
        raise
    return made


def run_context(setup: RunSetup, loaded: LoadedRecipe, **more: Any) -> RunContext:
    dataset, options = setup.dataset, setup.options
    return RunContext(
        src_root=dataset.root,
        out=setup.out,
        recipe=loaded.recipe,
        fingerprints=loaded.fingerprints,
        output_format=options.output_format,
        quality=options.quality,
        max_pixels=options.max_pixels,
        annotations=None if dataset.task == "classification" else setup.kind,
        names=tuple(dataset.names),
        **more,
    )


def variants_per_class(dataset: Dataset, options: ExpandOptions) -> Mapping[str, Sequence[int]]:
    """Train originals get N outputs: the original (variant 0) and N-1 variants, or N
    variants with --no-originals."""
    variants = range(1, options.times + 1) if options.no_originals else range(0, options.times)
    labels = {*dataset.classes, *(o.label for o in dataset.originals)}  # annotated: dominant
    return dict.fromkeys(sorted(labels), tuple(variants))


def refuse_overwrites(out: Path, planned: Iterable[str]) -> None:
    """--force never overwrites: stop before writing if a file augment would write exists."""
    own = [HEADER_NAME, MANIFEST_NAME, CLASSES_NAME, *(f"{s}/{METADATA_NAME}" for s in SPLITS)]
    clashes = [
        p for p in itertools.chain(own, planned) if (out / p).exists() or (out / p).is_symlink()
    ]
    if clashes:
        more = f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        shown = ", ".join(clashes[:5]) + more
        raise OutputError(
            f"output {out} already holds {shown}, which augment would overwrite; "
            "--force never overwrites files augment did not write: move them or choose "
            "another folder"
        )


def _write_outputs(
    setup: RunSetup,
    loaded: LoadedRecipe,
    split_of: Mapping[str, str],
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
    rejected: Iterable[Rejected],
    grouping: Grouping,
    complete: bool,
) -> tuple[dict[str, dict[str, int]], int]:
    """metadata.csv, manifest.jsonl, augment.json and the state, from the run's rows (stale
    outputs removed on the way). Returns the class counts and how many were removed."""
    out, dataset, state = setup.out, setup.dataset, setup.state
    recipe = loaded.recipe
    files = RecordFiles(out, SPLITS, dataset.classes if recipe.mix else [])
    try:
        # A folder someone else filled has no orphans of augment's.
        sweep = None if setup.foreign else class_folders(dataset.classes)
        pairs, removed = write_records(out, rows, leftovers, files, sweep)
    except BaseException:
        files.discard()
        raise
    classification = dataset.task == "classification"  # else no metadata, card or folders
    folders = dataset.classes if classification else []
    listed = {split for split, _ in pairs} if classification else set()
    present = [split for split in SPLITS if (out / split).is_dir() or split in listed]
    files.commit(present)
    counts = class_counts(pairs)
    soft = dataset.classes if recipe.mix else []
    try:
        if classification:
            write_dataset_card(out, dataset.classes, [s for s in SPLITS if s in counts], soft)
        for split, missing in missing_classes(folders, counts).items():
            for label in missing:  # an empty folder: every loader numbers the classes alike
                (out / split / label).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc, "write the dataset card in") from exc
    header = build_header(
        dataset,
        recipe,
        setup.options,
        loaded.fingerprints,
        split_of,
        counts,
        rejected,
        grouping.hashes,
    )
    if not classification:
        lines = (row.line for _, row in rows)
        setup.dropped, header["annotations"] = write_annotations(out, dataset, lines, setup)
    if setup.balanced_objects:  # --balance instances: objects per class, as planned
        header["balance"] = {"objects": setup.balanced_objects}
    write_header(out, header)
    # Both walk the rows (in path order, from disk past the budget): the digests go into the
    # state, so they are taken first.
    if setup.inputs is not None:
        stamps = ((path, row.stamp) for path, row in rows)
        remember_run(out, state, setup.inputs, stamps, grouping.found, complete)
    save_state(out, state, ((path, row.stamp) for path, row in rows))
    return counts, removed


def check_recipe_fits(recipe: Recipe, dataset: Dataset) -> None:
    """Policies name known classes; nothing makes unlabeled objects (recipe/annotated.py)."""
    recipe.check_classes(dataset.classes)
    check_recipe_for_task(recipe, dataset.task)
    if dataset.task == "classification":  # class folders: only classification outputs
        check_class_folders(dataset.classes)


def build_header(
    dataset: Dataset,
    recipe: Recipe,
    options: ExpandOptions,
    fingerprints: Fingerprints,
    split_of: Mapping[str, str],
    counts: Mapping[str, Mapping[str, int]],
    rejected: Iterable[Rejected],
    hashes: Mapping[str, ImageHash],
) -> dict[str, Any]:
    """The run header, `augment.json`; its holdout, an entry per original, is an iterator
    (write_header writes it an entry at a time)."""
    return {
        "format": HEADER_FORMAT,
        "tool": {"name": "augment", "version": __version__},
        "recipe": {
            "name": recipe.name,
            "fingerprint": fingerprints.recipe,
            "preprocess_fingerprint": fingerprints.preprocess,
            "spec": recipe.to_dict(),
        },
        "options": options.to_dict(uses_source_split(dataset, options)),
        "source": {
            "kind": dataset.kind,
            "originals": len(dataset.originals),
            "classes": dataset.classes,
        },
        "counts": counts,
        "holdout": holdout_entries(dataset.originals, split_of, hashes),
        # An iterator too (written an entry at a time): there may be millions.
        "rejected": (
            {"path": path, "reason": reason}
            for path, reason, _ in in_path_order(rejected).entries()
        ),
    }
