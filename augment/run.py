"""A run of `expand`: ingest → hold out → plan → execute → write → manifest, as one library
call (`augment.expand`; the module is not named expand so that it never hides that function).

This module does what every run does: it reads the recipe (once: the digest and the
transforms come from the same text), the rerun state and the source, checks OUT and takes
its lock. A rerun proven unchanged (augment/rerun/uptodate.py) returns from here; any other
run goes on in augment/full_run.py, imported only then: it brings albumentations, OpenCV,
numpy and the worker pool, most of a command's start-up, which such a rerun does without.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from augment.annotations.convert import output_kind
from augment.defaults import default_workers
from augment.errors import DatasetError, ManifestError, OutputError
from augment.files import output_error, source_folder_of, source_folders
from augment.layout import HEADER_NAME, STATE_DIR
from augment.model import Dataset, ExpandOptions, ExpandSummary, Phase, Rejected, Rejections
from augment.recipe.source import RecipeFile, read_recipe
from augment.rerun import heap
from augment.rerun import memo as memo_module
from augment.rerun.state import RunState, exclusive_run, load_state
from augment.rerun.uptodate import (
    MEMO_NAME,
    inputs_digest,
    remembered_clusters,
    tool_stamp,
    unchanged_since_last_run,
)
from augment.stages.duplicates import SourceHasher
from augment.stages.holdout import check_holdout_options, hold_out, holdout_entries
from augment.stages.ingest import ingest
from augment.stages.manifest import iter_rejected, read_header
from augment.summary import Laps, check_train_made, summarize

if TYPE_CHECKING:
    from augment.stages.executor import Executor


def expand(
    src: str | Path,
    out: str | Path,
    options: ExpandOptions,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    phase: Phase | None = None,
) -> ExpandSummary:
    """Build (or bring up to date) an augmented dataset in OUT from SRC.

    `progress(n)` is called as n more outputs are done; `on_plan(total)` once the number of
    outputs still to write is known; `phase` hears of the phases before that (reading the
    sources, hashing them for duplicates).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    lap = Laps(timings)
    # What exists before the run (the libraries' classes, the caller's objects) is not
    # examined again by the collections the run's own objects set off.
    with contextlib.ExitStack() as guard, heap.objects_kept_out_of_collections():
        reports = _Reports(progress, on_plan, phase)
        summary = _expand(Path(src), Path(out), options, executor, reports, guard, lap)
    summary.seconds = time.perf_counter() - started
    summary.timings = timings
    return summary


def _expand(
    src: Path,
    out: Path,
    options: ExpandOptions,
    executor: Executor | None,
    reports: _Reports,
    guard: contextlib.ExitStack,
    lap: Laps,
) -> ExpandSummary:
    recipe_file = _checked_request(src, options)
    lap("recipe")
    memo = _Memo.of(src, out, options, recipe_file.statement, guard)
    if memo is not None and memo.summary is not None:
        lap("ingest")  # SRC listed, and found as the memo has it
        return _proven(memo.summary, options, reports, lap)
    state = load_state(out, src.parent if src.is_file() else src)  # root as ingest takes it
    guard.callback(state.close)
    state.sources.tool = tool_stamp()
    # With no last run to compare with, the full run is certain: the recipe is built and
    # checked first, so that a mistake in it is reported before any source is read.
    recipe = _full_run().load(recipe_file, options) if state.last_run is None else None
    lap("recipe")
    hasher = _first_run_hasher(out, options)
    if hasher is not None:
        guard.callback(hasher.close)
    dataset = ingest(
        src,
        options.group_by,
        options.max_pixels,
        cache=state.sources,
        phase=reports.phase,
        columns=(options.path_column, options.label_column),
        hasher=hasher,
    )
    hashes = hasher.finish() if hasher is not None else {}
    lap("ingest")
    check_holdout_options(dataset, options)
    output_kind(dataset, options.annotations)  # a refused conversion: before OUT is made
    if recipe is not None:  # before OUT is made: a recipe that cannot serve these classes
        recipe.recipe.check_classes(dataset.classes)
        from augment.stages.plan import check_class_folders

        check_class_folders(dataset.classes)
    foreign = check_output_location(dataset, out, options.force)
    statement = recipe_file.statement
    inputs = None
    if statement is not None:
        inputs = inputs_digest(statement, _output_options(options), dataset)
    # Before OUT is compared with the last run or written: no other run may change it
    # meanwhile. The lock is on OUT itself, so taking it adds nothing to a foreign folder.
    if memo is None or not memo.locked:
        lock_output(out, guard)
    proven = not foreign and inputs is not None and unchanged_since_last_run(out, state, inputs)
    summary = _unchanged_run(out, state, dataset, options) if proven else None
    if summary is not None:
        return _proven(summary, options, reports, lap)
    # Only a complete run stores new digests (remember_run): an interrupted one stores none.
    state.last_run = None
    # The memo is drawn from the dataset as ingest gave it; the full run merges its groups.
    ingested = dataclasses.replace(dataset, originals=list(dataset.originals)) if memo else None
    full_run = _full_run()
    setup = full_run.RunSetup(out, options, dataset, state, inputs, foreign, recipe_file)
    setup.hashes = hashes
    del hashes  # one per source: the holdout takes them from setup, and lets them go
    progress = full_run.Progress(lap, reports.progress, reports.on_plan, reports.phase)
    if options.layout != "folders":  # the workers write shards
        import augment.sharded_run

        return augment.sharded_run.run(setup, recipe, guard, executor, progress)
    summary = full_run.run(setup, recipe, guard, executor, progress)
    if memo is not None and ingested is not None and not foreign:
        memo.keep(state, ingested, inputs)
    return summary


def _checked_request(src: Path, options: ExpandOptions) -> RecipeFile:
    """The recipe's file, read: an unknown name, no such file or a SRC that is an augment
    output fails now."""
    if options.times < 1:
        raise OutputError("--times must be at least 1")
    recipe_file = read_recipe(options.recipe)
    if is_augment_output(src.parent if src.is_file() else src):
        raise DatasetError(
            f"source {src} is an augment output (it has {HEADER_NAME} or {STATE_DIR}/): its "
            "train/validation/test would be taken as classes; give the source it was made from"
        )
    return recipe_file


def _proven(
    summary: ExpandSummary, options: ExpandOptions, reports: _Reports, lap: Laps
) -> ExpandSummary:
    """The end of a run proven to change nothing."""
    if reports.on_plan is not None:
        reports.on_plan(0)
    lap("check")
    check_train_made(summary, options)  # a failed run fails again, unchanged or not
    return summary


@dataclasses.dataclass
class _Memo:
    """The no-op rerun's memo for this run (augment/rerun/memo.py): SRC as listed before
    anything is read, the key of what the run is made from, and the summary the memo in OUT
    gives for that key, if it does (then OUT is `locked` by this run already)."""

    out: Path
    options: ExpandOptions
    sources: memo_module.Sources
    key: str
    summary: ExpandSummary | None = None
    locked: bool = False

    @classmethod
    def of(
        cls,
        src: Path,
        out: Path,
        options: ExpandOptions,
        statement: str | None,
        guard: contextlib.ExitStack,
    ) -> _Memo | None:
        """None when no memo can be kept or used: a labels file, a sharded layout, a recipe
        with no statement, SRC with a symbolic link in it."""
        if statement is None or options.layout != "folders":
            return None
        sources = memo_module.list_sources(src)
        if sources is None:
            return None
        root = str(src.resolve())
        memo = cls(
            out,
            options,
            sources,
            memo_module.run_key(sources, root, statement, _output_options(options)),
        )
        if (out / MEMO_NAME).is_file():
            lock_output(out, guard)  # before OUT is compared
            memo.locked = True
            memo.summary = memo_module.remembered_summary(out, memo.key)
        return memo

    def keep(self, state: RunState, dataset: Dataset, inputs: str | None) -> None:
        """After a full run: keep what a rerun's proof would conclude now, if it holds."""
        summary = None
        if inputs is not None and (state.last_run or {}).get("inputs") == inputs:
            summary = _unchanged_run(self.out, state, dataset, self.options)
        memo_module.keep(self.out, self.key, self.sources, state, dataset, summary)


@dataclasses.dataclass(frozen=True)
class _Reports:
    """Where a run reports how far it is (see `expand`)."""

    progress: Callable[[int], None] | None
    on_plan: Callable[[int], None] | None
    phase: Phase | None


def _first_run_hasher(out: Path, options: ExpandOptions) -> SourceHasher | None:
    """With no augment.json in OUT to take them from, the near-duplicate hashes are taken as
    the sources are read (one read each, hashed beside the reading); a rerun reuses those
    augment.json holds, and a sharded run takes its listing's."""
    if options.near_duplicates < 0 or options.layout != "folders" or (out / HEADER_NAME).exists():
        return None
    return SourceHasher(options.workers or default_workers())


def _full_run() -> ModuleType:
    """augment/full_run.py, imported on first use (see the module's docstring)."""
    import augment.full_run

    return augment.full_run


def _output_options(options: ExpandOptions) -> dict[str, Any]:
    """Every option that can change what a run writes or rejects: all but --workers."""
    chosen = dataclasses.asdict(options)
    if chosen["annotations"] is None:  # not asked for: the digests of earlier runs still hold
        del chosen["annotations"]
    return {k: v for k, v in chosen.items() if k != "workers"}


def lock_output(out: Path, guard: contextlib.ExitStack) -> None:
    """One run at a time writes into OUT (made here if it is new)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        guard.enter_context(exclusive_run(out))
    except OSError as exc:
        raise output_error(out, exc, "create the output folder") from exc


def _unchanged_run(
    out: Path, state: RunState, dataset: Dataset, options: ExpandOptions
) -> ExpandSummary | None:
    """The summary of a run that `unchanged_since_last_run` proved changes nothing, or None
    if the header the last run wrote does not hold what this run would write (then the
    full run decides).

    The header is the last run's (its stamp is unchanged), written from the inputs this
    run has: all of it but the holdout is what this run would write. Its sticky splits are
    what this run holds out by, so recomputing the holdout from them must give back the
    header's own entries. The jobs are a function of that holdout and of inputs the digest
    covers, so they are the last run's, all made: the counts and rejections the header
    lists are this run's too. The duplicate clusters are the last run's as well (same
    originals, same hashes): they come from the state, not from comparing every pair of
    hashes again.
    """
    found = remembered_clusters(state)
    if found is None:
        return None
    try:
        header = read_header(out, rejected=False)  # a labels file may reject millions
        counts = {split: dict(per_class) for split, per_class in header["counts"].items()}
        rejected = Rejections(Rejected(r["path"], r["reason"]) for r in iter_rejected(out))
        grouping, holdout = hold_out(dataset, options, header, found)
        # Text values only, so equal to the entries as read back from the file.
        entries = list(holdout_entries(grouping.originals, holdout.split_of, grouping.hashes))
        if entries != header["holdout"]:
            return None
    except (ManifestError, KeyError, TypeError, AttributeError, ValueError):
        return None
    grouped = dataclasses.replace(dataset, originals=grouping.originals)
    summary = summarize(out, options, grouped, grouping, holdout, counts, rejected)
    summary.reused = summary.total
    summary.fast_path = True
    summary.balanced_objects = header.get("balance", {}).get("objects", {})  # as planned
    return summary


def check_output_location(dataset: Dataset, out: Path, force: bool = False) -> bool:
    """Refuse an OUT that overlaps SRC, or a non-empty OUT that is not an augment output
    (unless `force`). Returns whether OUT holds files augment did not write (forced)."""
    src_root, target = dataset.root.resolve(), out.resolve()
    if target == src_root or target.is_relative_to(src_root):
        raise OutputError(
            f"output {out} is inside the source {src_root}; choose a folder outside it"
        )
    if src_root.is_relative_to(target):
        raise OutputError(f"output {out} contains the source {src_root}; choose another folder")
    # By identity too: a bind mount or a link gives a folder of SRC an unrelated path.
    inside = source_folder_of(out.absolute(), source_folders(src_root))
    if inside is not None:
        raise OutputError(
            f"output {out} is inside the source {src_root} ({inside} is a folder of the "
            "source: the same device and inode, by a bind mount or a link); choose a folder "
            "outside it"
        )
    with contextlib.suppress(OSError):
        if source_folder_of(src_root, source_folders_of_one(target)) is not None:
            raise OutputError(
                f"output {out} contains the source {src_root} (by a bind mount or a link); "
                "choose another folder"
            )
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    try:
        foreign = target.is_dir() and any(target.iterdir()) and not is_augment_output(target)
    except OSError as exc:
        raise output_error(out, exc, "read the output folder") from exc
    if foreign and not force:
        raise OutputError(
            f"output {out} is not empty and is not an augment output (no {HEADER_NAME}); "
            "choose an empty or new folder, or add --force to write next to what is there "
            "(nothing in it is deleted or overwritten)"
        )
    return foreign


def is_augment_output(out: Path) -> bool:
    return (out / HEADER_NAME).is_file() or (out / STATE_DIR).is_dir()


def source_folders_of_one(folder: Path) -> frozenset[tuple[int, int]]:
    """The identity of `folder` alone, to find it among another folder's ancestors."""
    st = folder.stat()
    return frozenset([(st.st_dev, st.st_ino)])
