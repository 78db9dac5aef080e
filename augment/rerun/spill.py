"""Sorting more entries than a run should hold in memory: an external merge sort.

`expand` keeps one entry per output file (its manifest record, what it planned, the stamp
of the file) and needs them in path order, the order of `manifest.jsonl`, `metadata.csv` and
`state.json`. Held in memory, they would make the run's memory grow with the dataset (a few
KB per output). A `SortedSpill` holds entries up to a budget of bytes; past it, it sorts
them and writes them to an anonymous temporary file (a *run*: removed by the system when
closed, even if the process is killed), and iterating merges the runs. Memory stays at the
budget whatever the number of entries; a run that fits the budget never touches the disk.

Entries are (key, value) pairs; they come out by key, and entries with the same key in the
order they were added. `merge_groups` walks several sorted streams side by side, the way
a merge join does.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import IO, Any, Generic, TypeVar

from augment.errors import OutputError

V = TypeVar("V")

SPILL_BUDGET = 2 << 20  # bytes held in memory per spill before a run goes to disk
# Entries per pickled block of a run, the unit read back while merging: a merge holds a
# block per run, so blocks stay small (a 50,000-output rerun merges ~25 runs a spill).
_BLOCK = 32
# Past this many runs they are merged into one, so that open files and a merge's fan-in stay
# bounded (64 runs are ~128 MB of records, some 100,000 outputs).
_MAX_RUNS = 64
_ENTRY_OVERHEAD = 120  # bytes of a held (key, value) pair beyond its key and value
_by_key = itemgetter(0)


class SortedSpill(Generic[V]):
    """Entries sorted by key with bounded memory. `add` takes the entry's approximate
    size in memory beyond its key (the caller knows what its values hold)."""

    def __init__(self, budget: int | None = None) -> None:
        self._budget = SPILL_BUDGET if budget is None else budget
        self._held: list[tuple[str, V]] = []
        self._held_bytes = 0
        self._runs: list[IO[bytes]] = []
        self._count = 0

    def add(self, key: str, value: V, size: int = 0) -> None:
        self._held.append((key, value))
        self._held_bytes += len(key) + size + _ENTRY_OVERHEAD
        self._count += 1
        if self._held_bytes > self._budget:
            self._spill()

    def __len__(self) -> int:
        return self._count

    def _spill(self) -> None:
        self._held.sort(key=_by_key)
        self._runs.append(_write_run(self._held))
        self._held = []
        self._held_bytes = 0
        if len(self._runs) >= _MAX_RUNS:
            merged = _write_run(heapq.merge(*map(_read_run, self._runs), key=_by_key))
            for run in self._runs:
                run.close()
            self._runs = [merged]

    def __iter__(self) -> Iterator[tuple[str, V]]:
        """Every entry by key; may be iterated again (not while adding)."""
        self._held.sort(key=_by_key)
        if not self._runs:
            return iter(self._held)
        return heapq.merge(*map(_read_run, self._runs), self._held, key=_by_key)

    def close(self) -> None:
        """Drop every entry (and the runs' files); the spill is empty again."""
        for run in self._runs:
            run.close()
        self._runs = []
        self._held = []
        self._held_bytes = self._count = 0

    def __enter__(self) -> SortedSpill[V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_run(entries: Iterable[Any]) -> IO[bytes]:
    try:
        run = tempfile.TemporaryFile()  # noqa: SIM115 - open until close(), read when merging
        it = iter(entries)
        while block := list(itertools.islice(it, _BLOCK)):
            pickle.dump(block, run, pickle.HIGHEST_PROTOCOL)
        run.flush()
    except OSError as exc:  # a full or read-only temporary folder: the user's to fix
        raise OutputError(
            f"cannot write the run's records to the temporary folder {tempfile.gettempdir()}: "
            f"{exc.strerror or exc} (set TMPDIR to a folder with room); finished work is "
            "kept: rerun the same command to resume"
        ) from exc
    return run


def _read_run(run: IO[bytes]) -> Iterator[Any]:
    run.seek(0)
    while True:
        try:
            block = pickle.load(run)
        except EOFError:
            return
        yield from block


def merge_groups(*streams: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, list[list[Any]]]]:
    """Every key of the sorted `streams`, in order, with the values each stream has for it
    (a list per stream, in the stream's order)."""
    iterators = [iter(stream) for stream in streams]
    heads = [next(it, None) for it in iterators]  # each stream's next entry (None: done)
    while True:
        key = None
        for head in heads:
            if head is not None and (key is None or head[0] < key):
                key = head[0]
        if key is None:
            return
        values: list[list[Any]] = []
        for i, head in enumerate(heads):
            group = []
            if head is not None and head[0] == key:
                it = iterators[i]
                while head is not None and head[0] == key:
                    group.append(head[1])
                    head = next(it, None)
                heads[i] = head
            values.append(group)
        yield key, values
