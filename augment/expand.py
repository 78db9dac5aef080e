"""`expand`: ingest → hold out → plan → execute → write → manifest, as one library call.

The CLI is a thin layer over `expand()`; tests and other programs call it directly. This
module reads the state and the source and decides whether anything is to be done: a rerun
proven unchanged (augment/uptodate.py) returns from here, and only a run with work to do
imports augment/build.py, where the planning, the worker pool and the writing are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from augment.defaults import DEFAULT_MAX_DISTANCE, DEFAULT_MAX_PIXELS, default_workers
from augment.errors import ManifestError, OutputError
from augment.files import output_error
from augment.imaging.digests import ImageHash
from augment.recipe.source import find_recipe, recipe_statement
from augment.rerun.state import RunState, exclusive_run, load_state
from augment.rerun.uptodate import (
    inputs_digest,
    remembered_clusters,
    tool_stamp,
    unchanged_since_last_run,
)
from augment.stages.duplicates import Cluster, Grouping, group_duplicates
from augment.stages.holdout import SPLITS, Holdout, assign_splits
from augment.stages.ingest import Dataset, Original, Rejected, ingest
from augment.stages.manifest import HEADER_NAME, STATE_DIR, read_header

if TYPE_CHECKING:
    from augment.stages.executor import Executor


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


@dataclass
class Checked:
    """What `expand` has established when a full run (augment/build.py) is needed."""

    out: Path
    options: ExpandOptions
    dataset: Dataset
    state: RunState
    inputs: str | None  # the digest of the run's inputs; None: a rerun is never proven
    foreign: bool  # OUT holds files augment did not write (--force)
    locked: bool  # this run holds OUT's lock


@dataclass
class Reporting:
    """Where a run reports what it is doing."""

    lap: Laps
    progress: Callable[[int], None] | None = None  # n more outputs done
    on_plan: Callable[[int], None] | None = None  # the number of outputs to write, once


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
    lap = Laps(timings)
    if options.times < 1:
        raise OutputError("--times must be at least 1")
    recipe_file = find_recipe(options.recipe)  # an unknown name or no such file: fails now
    state = load_state(out, src.parent if src.is_file() else src)  # root as ingest takes it
    guard.callback(state.close)
    state.sources.tool = tool_stamp()
    # With no last run to compare with, the full run is certain: the recipe is built and
    # checked first, so that a mistake in it is reported before any source is read.
    loaded = _full_run().load(options) if state.last_run is None else None
    lap("recipe")
    dataset = ingest(src, options.group_by, options.max_pixels, cache=state.sources)
    lap("ingest")
    foreign = check_output_location(dataset, out, options.force)
    statement = recipe_statement(recipe_file)
    inputs = None
    if statement is not None:
        inputs = inputs_digest(statement, _output_options(options), dataset)
    locked = False
    if state.last_run is not None and inputs is not None and not foreign:
        # Locked before OUT is compared with the last run: no other run may change it
        # meanwhile. An earlier run made the state folder, so this creates nothing.
        lock_output(out, guard)
        locked = True
        if unchanged_since_last_run(out, state, inputs):
            summary = _unchanged_run(out, state, dataset, options)
            if summary is not None:
                if on_plan is not None:
                    on_plan(0)
                lap("check")
                summary.seconds = time.perf_counter() - started
                summary.timings = timings
                return summary
    # Only a complete run stores new digests (remember_run): an interrupted one stores none.
    state.last_run = None
    checked = Checked(out, options, dataset, state, inputs, foreign, locked)
    reporting = Reporting(lap, progress, on_plan)
    summary = _full_run().build(checked, loaded, guard, executor, reporting)
    summary.seconds = time.perf_counter() - started
    summary.timings = timings
    return summary


def _full_run() -> ModuleType:
    """augment/build.py, imported on first use: it brings albumentations, OpenCV, numpy and
    the worker pool, most of a command's start-up (~0.5 s), which a rerun proven unchanged
    does without."""
    import augment.full_run

    return augment.full_run


def _output_options(options: ExpandOptions) -> dict[str, Any]:
    """Every option that can change what a run writes or rejects: all but --workers."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k != "workers"}


def lock_output(out: Path, guard: contextlib.ExitStack) -> None:
    try:
        # The state folder marks OUT as an augment output before any image is written, so
        # a first run that stops at any moment (killed, disk full) can be resumed without
        # --force.
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
        guard.enter_context(exclusive_run(out))  # one run at a time writes into OUT
    except OSError as exc:
        raise output_error(out, exc, "create the output folder") from exc


def hold_out(
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
        header = read_header(out)
        counts = {split: dict(per_class) for split, per_class in header["counts"].items()}
        rejected = [Rejected(r["path"], r["reason"]) for r in header["rejected"]]
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
    return summary


def holdout_entries(
    originals: Iterable[Original], split_of: Mapping[str, str], hashes: Mapping[str, ImageHash]
) -> Iterator[dict[str, str]]:
    """The header's `holdout`: an entry per original, made one at a time."""
    for o in originals:
        entry = {
            "path": o.path,
            "sha256": o.sha256,
            "label": o.label,
            "group": o.group,
            "split": split_of[o.path],
        }
        if o.path in hashes:
            entry["phash"] = hashes[o.path].to_hex()
        yield entry


def summarize(
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


class Laps:
    """Records the seconds each phase took, for ExpandSummary.timings."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = now - self.last
        self.last = now


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
