"""A run's records, kept in path order and on disk past a budget, and what is done with them.

A run keeps one entry per output file in four places: the records of the last run
(`manifest.jsonl`, and the journal of an unfinished run), the stamps in `state.json`, the
plan, and the records of this run. Each is a `SortedSpill` (sorted by output path, held in
memory up to a budget, on disk past it), and each step below walks them side by side like a
merge join, so the run's memory does not grow with the dataset:

- `reuse_done`: planned outputs already on disk with their recorded bytes are reused, the
  others are to do; the last run's records that are not reused are left over;
- `write_records`: `manifest.jsonl` and each split's `metadata.csv` from this run's records,
  left-over outputs removed (stale), and the outputs no record lists (orphans), in one walk;
- `write_interrupted`: after Ctrl-C, the same files, listing exactly the outputs on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from augment.annotations.objects import SPLIT_FOLDERS
from augment.errors import ManifestError
from augment.files import output_error, remove_temp_files
from augment.imaging.digests import sha256_file
from augment.layout import STATE_DIR
from augment.rerun.spill import SortedSpill, merge_groups
from augment.rerun.state import OutputStamp, RunState, output_is_current, output_stamp, save_state
from augment.stages.holdout import SPLITS
from augment.stages.manifest import (
    HEADER_NAME,
    MANIFEST_NAME,
    Record,
    RecordFiles,
    dumps,
    iter_journal,
    iter_jsonl,
    read_header,
)
from augment.stages.plan import NAME_SEPARATOR, Plan


class Row(NamedTuple):
    """One output as the run's files list it."""

    line: str  # its manifest.jsonl line
    split: str
    label: str
    soft_label: dict[str, float] | None
    stamp: OutputStamp | None  # its state.json entry (None: it has none)

    @property
    def size(self) -> int:
        """Roughly its bytes in memory beyond its path, for a spill's budget."""
        return len(self.line) + 250 + (0 if self.stamp is None else 450)


def row_of(record: Record, stamp: OutputStamp | None = None, line: str | None = None) -> Row:
    """`record`'s row; `line`: the record as already encoded (`dumps`), if it was."""
    split, label = record.get("split", ""), record.get("label", "")
    text = dumps(record) if line is None else line
    return Row(text, split, label, record.get("soft_label"), stamp)


class Previous(NamedTuple):
    """A record of the last run."""

    sha256: Any
    recipe: Any
    row: Row

    @property
    def size(self) -> int:
        return self.row.size + 250


def read_previous(
    out: Path, warnings: list[str] | None = None
) -> tuple[dict[str, Any], SortedSpill[Previous]]:
    """The last run's header and records: `manifest.jsonl`, and the journal of a run that
    did not finish (a folder without a header has only that), the later record of a path
    winning.

    A damaged header or manifest (truncated, garbled, the wrong shape) is taken as absent,
    with a warning naming it in `warnings`, in an OUT that has augment's state folder (an
    `augment.json` without one may be someone else's, and is never overwritten): every
    output is content-keyed, so this run remakes what it cannot vouch for."""
    warn = (warnings if warnings is not None else []).append
    sources: list[Iterable[Record]] = []
    header: dict[str, Any] = {}
    if (out / HEADER_NAME).exists():
        try:
            header = read_header(out, rejected=False)  # not used: maybe millions
        except ManifestError as exc:
            if not (out / STATE_DIR).is_dir():  # no state: someone else's file, kept
                raise
            warn(f"{exc}; taken as absent: the holdout is made anew and the outputs checked")
        if (out / MANIFEST_NAME).exists():
            sources.append(iter_jsonl(out / MANIFEST_NAME))
    sources.append(iter_journal(out))
    previous: SortedSpill[Previous] = SortedSpill()
    for records in sources:
        try:
            for record in records:
                if not _own_output_path(record["path"]):
                    warn(f"a record of {record['path']!r} (not an output path) was ignored")
                    continue
                row = row_of(record)
                entry = Previous(record.get("sha256"), record.get("recipe"), row)
                previous.add(record["path"], entry, entry.size)
        except ManifestError as exc:
            warn(f"{exc}; the records from there on are taken as absent and made again")
    return header, previous


def _own_output_path(path: str) -> bool:
    """Inside a split folder (`split/class/name`): the only place a record may name, whatever
    a damaged or edited manifest says (a stale one is deleted: never outside them)."""
    parts = path.split("/")
    # An annotated output's images are in images/<split folder>/ (annotations/objects.py).
    annotated = len(parts) == 3 and parts[0] == "images" and parts[1] in SPLIT_FOLDERS.values()
    return (
        len(parts) >= 2
        and (parts[0] in SPLITS or annotated)
        and all(p not in ("", ".", "..") and "\x00" not in p for p in parts)
    )


@dataclass
class Reuse:
    """What `reuse_done` found."""

    todo: dict[int, int] | None = None  # task index -> bit mask of its jobs to do; None: all
    to_write: int = 0
    reused: int = 0
    rehashed: int = 0  # existing outputs read to verify them (their stamp had changed)


def reuse_done(
    out: Path,
    plan: Plan,
    recipe_fp: str,
    previous: SortedSpill[Previous],
    stamps: SortedSpill[OutputStamp | None],
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
) -> Reuse:
    """Split planned outputs into those already on disk (their rows go to `rows`, with this
    run's recipe fingerprint: this recipe makes the same file) and the rest, to do. The
    last run's records not reused go to `leftovers`: stale unless this run writes them
    again.

    Names are content-keyed, so a file at a planned name that still holds its recorded
    bytes is current. An output whose stamp (size, mtime, inode) is what this tool wrote or
    last verified is trusted without reading; any other is hashed, and made again unless
    its bytes are right (a same-size corrupted file is caught here).
    """
    if not len(previous):
        return Reuse(to_write=plan.outputs)
    reuse = Reuse(todo={})
    assert reuse.todo is not None
    with SortedSpill[tuple[int, int]]() as planned:
        for index, task in enumerate(plan.tasks()):
            for j, job in enumerate(task.outputs):
                planned.add(job.path, (index, j), 100)
        for path, (jobs, records, entries) in merge_groups(planned, previous, stamps):
            last = records[-1] if records else None
            if jobs and last is not None:
                row, rehashed = _current(out, path, last, entries[-1] if entries else None)
                reuse.rehashed += rehashed
                if row is not None:
                    row = _with_recipe(row, last.recipe, recipe_fp)
                    rows.add(path, row, row.size)
                    reuse.reused += 1
                    continue
            if last is not None:
                leftovers.add(path, last, last.size)
            for index, j in jobs:
                reuse.todo[index] = reuse.todo.get(index, 0) | 1 << j
            reuse.to_write += len(jobs)
    return reuse


def _current(
    out: Path, path: str, previous: Previous, stamp: OutputStamp | None
) -> tuple[Row | None, bool]:
    """The row of an output that still holds its recorded bytes (None if it does not), and
    whether the file had to be read to tell."""
    if output_is_current(out, path, previous.sha256, stamp):
        return previous.row._replace(stamp=stamp), False
    if not (out / path).is_file():
        return None, False
    if _sha256_or_none(out / path) != previous.sha256:
        return None, True
    return previous.row._replace(stamp=output_stamp(out, path, previous.sha256)), True


def _with_recipe(row: Row, recipe: Any, recipe_fp: str) -> Row:
    if recipe == recipe_fp:
        return row
    return row._replace(line=dumps({**json.loads(row.line), "recipe": recipe_fp}))


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def add_written(
    out: Path, rows: SortedSpill[Row], records: Sequence[Record], lines: Sequence[str]
) -> None:
    """The records of a finished shard, stamped: their files were just written. `lines`
    are the records as the worker journaled them (encoded once, there)."""
    for record, line in zip(records, lines, strict=True):
        path = record["path"]
        row = row_of(record, output_stamp(out, path, record["sha256"]), line)
        rows.add(path, row, row.size)


def write_records(
    out: Path,
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
    files: RecordFiles,
    sweep: Iterable[str] | None = None,
) -> tuple[Counter[tuple[str, str]], int]:
    """Hand every row to `files` in path order, and remove the left-over outputs this run
    did not write again; with `sweep` (class folders), the orphans in them too (see
    `Orphans`): the same walk, as both go by path. Returns the outputs per (split, label)
    and how many were removed."""
    counts: Counter[tuple[str, str]] = Counter()
    removed = 0
    orphans = Orphans(out, () if sweep is None else sweep)
    for path, (new, old) in merge_groups(rows, leftovers):
        if sweep is not None:
            removed += orphans.listed(path)
        if new:
            row = new[-1]
            files.add(row.line, path, row.label, row.soft_label)
            counts[row.split, row.label] += 1
            continue
        try:
            removed += _remove_stale(out, path, old[-1].sha256)
        except OSError as exc:
            raise output_error(out, exc, "remove stale outputs in") from exc
    return counts, removed + orphans.finish()


# An output's name: `<stem>_nohash_<12 hex digits of its key>.<ext>` (augment/stages/plan.py).
_OUTPUT_NAME = re.compile(rf"[^.].*{re.escape(NAME_SEPARATOR)}[0-9a-f]{{12}}\.[a-z]+")


class Orphans:
    """Removes the outputs no record lists: what an interrupted or failed run wrote before
    it could journal it (a worker killed mid-shard, a disk full), whatever changed since
    (recipe, seed, format, sources). Only files named as augment names outputs, in the
    class `folders` (`split/class`) this run writes, that are not among this run's rows
    nor the last run's records (its leftovers: those stale removal judges by their bytes,
    and keeps if the user replaced them): OUT then holds what a clean run of this command
    holds.

    Given every listed path in path order (`listed`), each folder's paths come together:
    one folder's names are held at a time, and a folder is swept once its paths are past.
    Every file the last run's manifest lists is among them, so a sweep never removes one
    (a run that fails after a sweep leaves that manifest true)."""

    def __init__(self, out: Path, folders: Iterable[str]) -> None:
        self._out = out
        self._todo = set(folders)
        self._folder: str | None = None
        self._names: set[str] = set()

    def listed(self, path: str) -> int:
        """One listed path; returns how many orphans were removed (a folder just past)."""
        parent, _, name = path.rpartition("/")
        removed = 0
        if parent != self._folder:
            removed = self._past()
            self._folder, self._names = parent, set()
        self._names.add(name)
        return removed

    def finish(self) -> int:
        """After the last path: the last folder, and those no path is in."""
        removed = self._past()
        self._folder = None
        rest, self._todo = sorted(self._todo), set()
        return removed + sum(_sweep(self._out, folder, set()) for folder in rest)

    def _past(self) -> int:
        if self._folder is None or self._folder not in self._todo:
            return 0
        self._todo.discard(self._folder)
        return _sweep(self._out, self._folder, self._names)


def _sweep(out: Path, folder: str, kept: set[str]) -> int:
    try:
        names = os.listdir(out / folder)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise output_error(out / folder, exc, "read") from exc
    removed = 0
    for name in names:
        if name in kept or not _OUTPUT_NAME.fullmatch(name):  # most are: no path made
            continue
        path = out / folder / name
        if path.is_symlink():
            continue
        if not path.is_file():
            continue
        try:
            path.unlink()
        except OSError as exc:
            raise output_error(path, exc, "remove orphaned outputs in") from exc
        removed += 1
    # A folder only orphans filled goes too, as a clean run never makes it.
    with contextlib.suppress(OSError):
        if removed:
            (out / folder).rmdir()  # only if empty
            (out / folder).parent.rmdir()
    return removed


def _remove_stale(out: Path, path: str, sha256: Any) -> bool:
    """Delete an output an earlier run wrote that this run no longer makes. Only a file the
    manifest lists, still holding the bytes it recorded, is touched: a file the tool did not
    write (or that someone has since replaced) is never deleted."""
    target = out / path
    if not (
        target.is_file()
        and not target.is_symlink()
        and target.resolve().is_relative_to(out.resolve())
        and sha256_file(target) == sha256
    ):
        return False
    target.unlink()
    parent = target.parent
    while parent != out and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True


def write_interrupted(
    out: Path,
    rows: SortedSpill[Row],
    leftovers: SortedSpill[Previous],
    pending: Iterable[str],
    state: RunState,
) -> None:
    """After Ctrl-C (the pool is stopped by now): no temporary file is left, and
    manifest.jsonl and metadata.csv list exactly the tool's image files that are on disk
    (those of the earlier run not yet removed, and those of every finished shard), so every
    loader sees a consistent folder. augment.json is left as the last complete run wrote
    it; the journal stays, and a rerun resumes. `pending` are the outputs this run was to
    write."""
    remove_temp_files(out, [STATE_DIR, *SPLITS])
    with SortedSpill[Row]() as journal, SortedSpill[None]() as todo:
        # The journal also has the shards that workers finished but this process had not
        # received yet when the pool was stopped.
        for record in iter_journal(out):
            row = row_of(record)
            journal.add(record["path"], row, row.size)
        for path in pending:
            todo.add(path, None, 0)
        files = RecordFiles(out, SPLITS)
        listed = False
        try:
            for path, (new, journaled, old, planned) in merge_groups(
                rows, journal, leftovers, todo
            ):
                kept = _listed(out, path, new, journaled, old, bool(planned))
                if kept is not None:
                    files.add(kept.line, path, kept.label, kept.soft_label)
                    listed = True
                elif planned:  # of a shard cut short: it goes, and is redone
                    (out / path).unlink(missing_ok=True)
        except BaseException:
            files.discard()
            raise
        files.commit(
            [split for split in SPLITS if (out / split).is_dir()],
            manifest=listed or (out / MANIFEST_NAME).exists(),
        )
    save_state(out, state, _stamps_so_far(rows, state.outputs))


def _listed(
    out: Path, path: str, new: list[Row], journaled: list[Row], old: list[Previous], planned: bool
) -> Row | None:
    """The row an interrupted run lists for `path`: this run's, else a finished shard's,
    else the earlier run's (unless this run was to make it again), if the file is there."""
    if new:
        return new[-1]
    if journaled and (out / path).is_file():
        return journaled[-1]
    if old and not planned and (out / path).is_file():
        return old[-1].row
    return None


def _stamps_so_far(
    rows: SortedSpill[Row], stamps: SortedSpill[OutputStamp | None]
) -> Iterator[tuple[str, OutputStamp | None]]:
    """The state's output entries after an interrupted run: the earlier ones, updated with
    those this run wrote or verified."""
    for path, (new, old) in merge_groups(rows, stamps):
        yield path, new[-1].stamp if new else old[-1]
