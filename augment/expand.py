"""`expand`: ingest → hold out → plan → execute → write → manifest, as one library call.

The CLI is a thin layer over `expand()`; tests and other programs call it directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment import __version__
from augment.defaults import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_PIXELS, default_workers
from augment.digests import ImageHash
from augment.duplicates import Cluster, Grouping, group_duplicates
from augment.errors import ManifestError, OutputError
from augment.executor import Executor, multiprocessing_pool
from augment.holdout import SPLITS, Holdout, assign_splits
from augment.ingest import Dataset, Rejected, ingest
from augment.manifest import (
    HEADER_FORMAT,
    HEADER_NAME,
    MANIFEST_NAME,
    STATE_DIR,
    RecordFiles,
    clear_journal,
    read_header,
    write_header,
)
from augment.plan import Fingerprints, Plan, shard_tasks
from augment.recipe import Recipe, load_recipe
from augment.records import (
    Previous,
    Row,
    add_written,
    read_previous,
    reuse_done,
    write_interrupted,
    write_records,
)
from augment.spill import SortedSpill
from augment.state import RunState, exclusive_run, load_state, save_state
from augment.uptodate import (
    inputs_digest,
    remember_run,
    remembered_clusters,
    unchanged_since_last_run,
)
from augment.worker import RunContext
from augment.writer import output_error, remove_temp_files

OUTPUTS_PER_SHARD = 32


@dataclass(frozen=True)
class ExpandOptions:
    times: int = 5
    no_originals: bool = False
    recipe: str = "default"
    val: float | int = 0.1
    test: float | int = 0.1
    group_by: str | None = None
    seed: int = 0
    workers: int | None = None  # None: all cores
    output_format: str = "same"
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    balance: bool = False  # minority classes get more variants: every class ends train equal
    # Use a non-empty OUT that is not an augment output. Files already there are never
    # deleted or overwritten: the run stops first if one has a name augment would write.
    force: bool = False
    # Originals whose pHashes are this many bits apart or fewer are held out together; -1 off.
    near_duplicates: int = DEFAULT_MAX_DISTANCE

    def to_dict(self) -> dict[str, Any]:
        """The options that decide the output (not `workers`: it never changes a byte)."""
        return {
            "times": self.times,
            "no_originals": self.no_originals,
            "seed": self.seed,
            "val": self.val,
            "test": self.test,
            "group_by": self.group_by,
            "format": self.output_format,
            "quality": self.quality,
            "balance": self.balance,
            "near_duplicates": self.near_duplicates,
        }


@dataclass
class ExpandSummary:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> class -> output files
    originals: dict[str, int]  # split -> originals
    written: int
    reused: int
    removed: int
    rejected: list[Rejected] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    duplicates: list[Cluster] = field(default_factory=list)  # held out together
    duplicate_conflicts: list[Cluster] = field(default_factory=list)  # split by an earlier run
    seconds: float = 0.0
    train_originals: dict[str, int] = field(default_factory=dict)  # class -> train originals
    balanced: bool = False
    # What a rerun cost, to measure that a no-op rerun is cheap (see README, "Reruns"):
    sources_read: int = 0  # sources read and hashed (the others: unchanged stamp, not read)
    outputs_rehashed: int = 0  # existing outputs read to verify them (stamp had changed)
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    # Proven to change nothing, so nothing was planned, read or written (augment/uptodate.py).
    fast_path: bool = False

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def expand(
    src: Path,
    out: Path,
    options: ExpandOptions,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> ExpandSummary:
    """Build (or bring up to date) an augmented dataset in OUT from SRC.

    `progress(n)` is called as n more outputs are done; `on_plan(total)` once the number of
    outputs still to write is known.
    """
    with contextlib.ExitStack() as guard:
        return _expand(src, out, options, executor, progress, on_plan, guard)


def _expand(
    src: Path,
    out: Path,
    options: ExpandOptions,
    executor: Executor | None,
    progress: Callable[[int], None] | None,
    on_plan: Callable[[int], None] | None,
    guard: contextlib.ExitStack,
) -> ExpandSummary:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    lap = _Laps(timings)
    if options.times < 1:
        raise OutputError("--times must be at least 1")
    recipe = load_recipe(options.recipe)
    fingerprints = Fingerprints(
        preprocess=recipe.preprocess_fingerprint(options.output_format, options.quality),
        recipe=recipe.fingerprint(options.output_format, options.quality),
    )
    lap("recipe")
    state = load_state(out, src.parent if src.is_file() else src)  # root as ingest takes it
    guard.callback(state.close)
    dataset = ingest(src, options.group_by, options.max_pixels, cache=state.sources)
    recipe.check_classes(dataset.classes)
    lap("ingest")
    foreign = check_output_location(dataset, out, options.force)
    inputs = inputs_digest(recipe, fingerprints, _output_options(options), dataset)
    locked = False
    if state.last_run is not None and not foreign:
        # Locked before OUT is compared with the last run: no other run may change it
        # meanwhile. An earlier run made the state folder, so this creates nothing.
        _lock(out, guard)
        locked = True
        if unchanged_since_last_run(out, state, inputs):
            summary = _unchanged_run(out, state, dataset, recipe, options, fingerprints)
            if summary is not None:
                if on_plan is not None:
                    on_plan(0)
                lap("check")
                summary.seconds = time.perf_counter() - started
                summary.timings = timings
                return summary
    # Only a complete run stores new digests (remember_run): an interrupted one stores none.
    state.last_run = None

    # A folder someone else filled (--force) has no earlier run: nothing is read from it.
    previous_header, previous = read_previous(out)
    guard.callback(previous.close)
    grouping, holdout = _hold_out(dataset, options, previous_header)
    del previous_header  # an entry per original, not to be held through the run
    dataset.originals = grouping.originals
    plan = Plan(
        dataset.originals,
        holdout.split_of,
        variants_per_class(dataset, options),
        fingerprints,
        options.seed,
        options.output_format,
        mix=recipe.mix,
        mix_size=recipe.preprocess.size,
        balance=options.balance,
    )
    if foreign:  # before the first write: --force never overwrites what is there
        refuse_overwrites(out, (job.path for task in plan.tasks() for job in task.outputs))
    if not locked:
        _lock(out, guard)
    try:
        remove_temp_files(out)
    except OSError as exc:
        raise output_error(out, exc, "create the output folder") from exc
    # This run's records by path (the reused ones now, the others as shards finish), and
    # the last run's that are not reused.
    rows: SortedSpill[Row] = guard.enter_context(SortedSpill())
    leftovers: SortedSpill[Previous] = guard.enter_context(SortedSpill())
    reuse = reuse_done(out, plan, fingerprints.recipe, previous, state.outputs, rows, leftovers)
    previous.close()
    lap("plan")
    if on_plan is not None:
        on_plan(reuse.to_write)

    ctx = RunContext(
        src_root=dataset.root,
        out=out,
        recipe=recipe,
        fingerprints=fingerprints,
        output_format=options.output_format,
        quality=options.quality,
        max_pixels=options.max_pixels,
    )
    run = executor or multiprocessing_pool(options.workers or default_workers())
    rejected = [*dataset.rejected, *plan.rejected]
    written = 0
    try:
        if reuse.to_write:
            for result in run(ctx, shard_tasks(plan.tasks(reuse.todo), OUTPUTS_PER_SHARD)):
                add_written(out, rows, result.records)
                rejected.extend(result.rejected)
                written += len(result.records)
                if progress is not None:
                    progress(len(result.records))
    except KeyboardInterrupt:
        pending = (job.path for task in plan.tasks(reuse.todo) for job in task.outputs)
        write_interrupted(out, rows, leftovers, pending, state)
        raise
    lap("execute")

    rejected = list(dict.fromkeys(rejected))  # a bad mixing partner is reported once
    state.sources.keep_only({o.path for o in dataset.originals})
    counts, removed = _write_outputs(
        out,
        dataset,
        recipe,
        options,
        fingerprints,
        holdout.split_of,
        rows,
        leftovers,
        rejected,
        grouping,
        state,
        inputs,
        complete=written == reuse.to_write,
    )
    clear_journal(out)
    lap("write")

    summary = _summary(out, options, dataset, grouping, holdout, counts, rejected)
    summary.written = written
    summary.reused = reuse.reused
    summary.removed = removed
    summary.seconds = time.perf_counter() - started
    summary.sources_read = state.sources.reads
    summary.outputs_rehashed = reuse.rehashed
    summary.timings = timings
    return summary


def _output_options(options: ExpandOptions) -> dict[str, Any]:
    """Every option that can change what a run writes or rejects: all but --workers."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k != "workers"}


def _lock(out: Path, guard: contextlib.ExitStack) -> None:
    try:
        # The state folder marks OUT as an augment output before any image is written, so
        # a first run that stops at any moment (killed, disk full) can be resumed without
        # --force.
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
        guard.enter_context(exclusive_run(out))  # one run at a time writes into OUT
    except OSError as exc:
        raise output_error(out, exc, "create the output folder") from exc


def _hold_out(
    dataset: Dataset,
    options: ExpandOptions,
    previous_header: Mapping[str, Any],
    found: Sequence[Sequence[str]] | None = None,
) -> tuple[Grouping, Holdout]:
    """Duplicates kept together, then the holdout; sticky to the previous header's splits.
    `found`: the duplicate clusters, when known (see group_duplicates)."""
    previous_splits = {
        h["path"]: h["split"] for h in previous_header.get("holdout", []) if isinstance(h, dict)
    }
    grouping = group_duplicates(
        dataset.root,
        dataset.originals,
        options.near_duplicates,
        _known_hashes(previous_header),
        previous_splits,
        threads=options.workers or default_workers(),
        found=found,
    )
    holdout = assign_splits(
        grouping.originals, options.val, options.test, options.seed, previous_splits
    )
    return grouping, holdout


def _unchanged_run(
    out: Path,
    state: RunState,
    dataset: Dataset,
    recipe: Recipe,
    options: ExpandOptions,
    fingerprints: Fingerprints,
) -> ExpandSummary | None:
    """The summary of a run that `unchanged_since_last_run` proved changes nothing, or None
    if the header the last run wrote does not hold what this run would write (then the
    full run decides).

    The header is the last run's (its stamp is unchanged), so its sticky splits are what this
    run holds out by: recomputing the holdout from it must give back the header's own. The
    jobs are a function of that holdout and of inputs the digest covers, so they are the
    last run's, all made: the counts and rejections the header lists are this run's too.
    The duplicate clusters are the last run's as well (same originals, same hashes): they
    are taken from the state rather than found again by comparing every pair of hashes.
    """
    found = remembered_clusters(state)
    if found is None:
        return None
    try:
        header = read_header(out)
        counts = {split: dict(per_class) for split, per_class in header["counts"].items()}
        rejected = [Rejected(r["path"], r["reason"]) for r in header["rejected"]]
        grouping, holdout = _hold_out(dataset, options, header, found)
    except (ManifestError, KeyError, TypeError, AttributeError, ValueError):
        return None
    grouped = dataclasses.replace(dataset, originals=grouping.originals)
    rebuilt = build_header(
        grouped, recipe, options, fingerprints, holdout.split_of, counts, rejected, grouping.hashes
    )
    rebuilt["holdout"] = list(rebuilt["holdout"])
    if json.loads(json.dumps(rebuilt)) != header:  # compared as read back from the file
        return None
    summary = _summary(out, options, grouped, grouping, holdout, counts, rejected)
    summary.reused = summary.total
    summary.fast_path = True
    return summary


def _summary(
    out: Path,
    options: ExpandOptions,
    dataset: Dataset,
    grouping: Grouping,
    holdout: Holdout,
    counts: Mapping[str, dict[str, int]],
    rejected: Sequence[Rejected],
) -> ExpandSummary:
    """What a run made, before its costs (written, reused, timings) are filled in."""
    failed = {r.path for r in rejected}
    originals = Counter(s for p, s in holdout.split_of.items() if p not in failed)
    train_originals = Counter(
        o.label
        for o in dataset.originals
        if holdout.split_of[o.path] == "train" and o.path not in failed
    )
    return ExpandSummary(
        out=out,
        counts={s: counts[s] for s in SPLITS if s in counts},
        originals={s: originals[s] for s in SPLITS},
        written=0,
        reused=0,
        removed=0,
        rejected=sorted(rejected, key=lambda r: r.path),
        too_small=holdout.too_small,
        duplicates=grouping.clusters,
        duplicate_conflicts=grouping.conflicts,
        train_originals=dict(sorted(train_originals.items())),
        balanced=options.balance,
    )


class _Laps:
    """Records the seconds each phase took, for ExpandSummary.timings."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = now - self.last
        self.last = now


def class_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Output files per (split, class), as a table with both sorted: the header's `counts`
    and the summary's."""
    table: dict[str, dict[str, int]] = {}
    for (split, label), n in sorted(counts.items()):
        table.setdefault(split, {})[label] = n
    return table


def variants_per_class(dataset: Dataset, options: ExpandOptions) -> Mapping[str, Sequence[int]]:
    """Train originals get N outputs: the original (variant 0) and N-1 variants, or N
    variants with --no-originals."""
    variants = range(1, options.times + 1) if options.no_originals else range(0, options.times)
    return dict.fromkeys(dataset.classes, tuple(variants))


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


def refuse_overwrites(out: Path, planned: Iterable[str]) -> None:
    """--force never overwrites: stop before writing if a file augment would write exists."""
    own = [HEADER_NAME, MANIFEST_NAME, *(f"{split}/metadata.csv" for split in SPLITS)]
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


def _known_hashes(header: Mapping[str, Any]) -> dict[str, ImageHash]:
    """sha256 -> perceptual hash of the originals an earlier run hashed (saves a decode)."""
    known: dict[str, ImageHash] = {}
    for h in header.get("holdout", []):
        if isinstance(h, dict) and isinstance(h.get("sha256"), str):
            try:
                known[h["sha256"]] = ImageHash.from_hex(h["phash"])
            except (KeyError, TypeError, ValueError):
                continue  # an older header without hashes: hash again
    return known


def _write_outputs(
    out: Path,
    dataset: Dataset,
    recipe: Recipe,
    options: ExpandOptions,
    fingerprints: Fingerprints,
    split_of: Mapping[str, str],
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
    rejected: Sequence[Rejected],
    grouping: Grouping,
    state: RunState,
    inputs: str,
    complete: bool,
) -> tuple[dict[str, dict[str, int]], int]:
    """metadata.csv, manifest.jsonl, augment.json and the state, from the run's rows (stale
    outputs removed on the way). Returns the class counts and how many were removed."""
    files = RecordFiles(out, SPLITS, dataset.classes if recipe.mix else [])
    try:
        pairs, removed = write_records(out, rows, leftovers, files)
    except BaseException:
        files.discard()
        raise
    listed = {split for split, _ in pairs}
    files.commit([split for split in SPLITS if (out / split).is_dir() or split in listed])
    counts = class_counts(pairs)
    header = build_header(
        dataset, recipe, options, fingerprints, split_of, counts, rejected, grouping.hashes
    )
    write_header(out, header)
    # Both walk the rows (in path order, from disk past the budget): the digests go into the
    # state, so they are taken first.
    stamps = ((path, row.stamp) for path, row in rows)
    remember_run(out, state, inputs, stamps, grouping.found, complete)
    save_state(out, state, ((path, row.stamp) for path, row in rows))
    return counts, removed


def build_header(
    dataset: Dataset,
    recipe: Recipe,
    options: ExpandOptions,
    fingerprints: Fingerprints,
    split_of: Mapping[str, str],
    counts: Mapping[str, Mapping[str, int]],
    rejected: Sequence[Rejected],
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
        "options": options.to_dict(),
        "source": {
            "kind": dataset.kind,
            "originals": len(dataset.originals),
            "classes": dataset.classes,
        },
        "counts": counts,
        "holdout": (  # an entry per original: written one at a time
            {
                "path": o.path,
                "sha256": o.sha256,
                "label": o.label,
                "group": o.group,
                "split": split_of[o.path],
                **({"phash": hashes[o.path].to_hex()} if o.path in hashes else {}),
            }
            for o in dataset.originals
        ),
        "rejected": [
            {"path": r.path, "reason": r.reason} for r in sorted(rejected, key=lambda r: r.path)
        ],
    }
