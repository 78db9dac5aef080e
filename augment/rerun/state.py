"""Per-machine run state in `OUT/.augment/`: what a rerun may trust without reading.

A rerun of an unchanged dataset must cost a small fraction of the first run, and most of
that cost would be reading and hashing every source and every output again. Like `make`,
git's index or DVC's state database, this file remembers a file's stamp (size, mtime_ns,
ctime_ns, inode) next to what its bytes were found to be. The ctime is git's answer to an
edit that keeps the size and sets the mtime back (`touch -r`, an editor or a sync tool that
restores times): no user call can set a ctime, and any write moves it.

In `state.json`, one JSON document:

- `sources`: per source path, the stamp and the `Original` fields read from its bytes
  (sha256, format, size in pixels), or the reason its bytes are not an image, so an
  unchanged source is only `stat`-ed;
- `last_run`: digests of what the last complete run was made from and of OUT as it left
  it, so a rerun that matches both returns at once, and the duplicate clusters that run
  found (see augment/rerun/uptodate.py).

In `outputs.jsonl`, a line per output file: its path, the stamp and the sha256 it had when
this tool wrote or last verified it, so an unchanged output is only `stat`-ed; a different
size, mtime, ctime *or* inode means the file is read and hashed again, and made again if its
bytes are wrong.

Stamps are per machine, so they live here and never in `manifest.jsonl`, whose bytes must
be the same on every machine. Each file is rewritten only when its content changes, so a
no-op rerun leaves them untouched as well. A missing or unreadable state only costs a
rehash. The outputs' entries are read a line at a time into a `SortedSpill` and written
from the run's records in path order, never held as one dict; they are read when first
used, so a rerun proven unchanged never opens their file.

An output is stamped right after this tool wrote it: only a change made within the same
mtime tick, at the same size and inode, could slip past, and nothing but this tool writes
there. Sources are edited by people and scripts, so for them the "racy" rule of git's
index applies: a source whose mtime is within `RACY_NS` of the moment it was read could
still be rewritten within the same timestamp tick (coarse clocks, FAT, network file
systems) at the same size, so its stamp proves nothing and it is not remembered.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import operator
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.bounded import loads_json
from augment.errors import OutputError
from augment.files import ChangedFile
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.model import Original, Rejected
from augment.rerun.spill import SortedSpill

STATE_FORMAT = "augment-state/3"  # 2 had no ctime in stamps; 1 kept the outputs in state.json
RACY_NS = 2_000_000_000  # coarser than any common file system's mtime granularity

Stamp = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
STAMP_LEN = 4

# Fields of Original that come from the file's bytes (the rest come from its listing, or,
# for an annotation, from files the state does not stamp).
_CONTENT_FIELDS = ("sha256", "format", "width", "height")
_CONTENT = frozenset(_CONTENT_FIELDS)
_content_values = operator.itemgetter(*_CONTENT_FIELDS)
_REJECTED_KEYS = {"stamp", "rejected", "tool"}


def stamp_of(path: Path | str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stamp_from(st)


def stamp_from(st: os.stat_result) -> Stamp:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# A source's entry as held in memory: its stamp's three fields, then the Original fields
# named by _CONTENT_FIELDS, in that order, or, for a file whose bytes are not an image,
# the reason and the tool that found it. One flat tuple takes ~200 bytes a source where
# the JSON-shaped {"stamp": [...], "original": {...}} took ~570, and the cache holds an
# entry per source for the whole run (in every pool process forked from it, too).
SourceEntry = tuple[Any, ...]
_REJECTED_LEN = STAMP_LEN + 2  # stamp, reason, tool


@dataclass
class SourceCache:
    """Original fields of sources by path, valid while the file's stamp is unchanged."""

    root: str
    entries: dict[str, SourceEntry] = field(default_factory=dict)
    # What this run reads files with (uptodate.tool_stamp): a file rejected by another
    # version of the tool or of its decoders is read again, as it may now be taken.
    tool: str = ""
    hits: int = 0
    reads: int = 0
    # Sources whose bytes had to be read (or tried: a rejected one counts too), because
    # no remembered stamp vouched for them. Only a run with none can be proven a no-op.
    misses: int = 0

    stamp = staticmethod(stamp_of)
    stamp_from = staticmethod(stamp_from)

    def lookup(
        self, rel: str, stamp: Stamp | None, label: str, group: str, max_pixels: int
    ) -> Original | Rejected | None:
        """What a file whose stamp, just taken, is the remembered one was found to be: its
        Original, with the label and group its listing gives now, or why it is no image.
        None, counted as a miss, when the file must be read."""
        found = self._remembered(rel, stamp, label, group)
        # The pixel limit is an option of this run, so a remembered source meets it too.
        if isinstance(found, Original) and found.width * found.height > max_pixels:
            found = None
        if found is None:
            self.misses += 1
        return found

    def _remembered(
        self, rel: str, stamp: Stamp | None, label: str, group: str
    ) -> Original | Rejected | None:
        entry = self.entries.get(rel)
        if entry is None or stamp is None or stamp != entry[:STAMP_LEN]:
            return None
        rejected = len(entry) == _REJECTED_LEN
        if rejected and entry[STAMP_LEN + 1] != self.tool:
            return None
        self.hits += 1
        if rejected:
            return Rejected(rel, entry[STAMP_LEN])
        return Original(path=rel, label=label, group=group, **_content(entry))

    def remember(self, rel: str, before: Stamp | None, path: Path, original: Original) -> None:
        """Record what `original` was read from, if the file held still and is not racy.

        `before` is the stamp taken before the bytes were read: a file that changed while
        being read, or was modified too recently to be told apart by its mtime, is not kept.
        """
        self._keep(rel, before, path, tuple(getattr(original, k) for k in _CONTENT_FIELDS))

    def remember_rejected(self, rel: str, before: Stamp | None, path: Path, reason: str) -> None:
        """Record that the bytes at `path` are not an image, and why, as `remember` does.

        Only for a verdict on the bytes alone: the same bytes get it again on any run, so a
        rerun need not read them (a file that could not be read at all is not one).
        """
        self._keep(rel, before, path, (reason, self.tool))

    def _keep(self, rel: str, before: Stamp | None, path: Path, found: tuple[Any, ...]) -> None:
        self.reads += 1
        if before is None or stamp_of(path) != before:
            self.entries.pop(rel, None)
            return
        if time.time_ns() - before[1] <= RACY_NS:
            self.entries.pop(rel, None)
            return
        self.entries[rel] = (*before, *found)

    def keep_only(self, paths: set[str]) -> None:
        for rel in set(self.entries) - paths:
            del self.entries[rel]


def _source_json(entry: SourceEntry) -> dict[str, Any]:
    """A source entry as state.json holds it (the inverse of `_source_entries`)."""
    if len(entry) == _REJECTED_LEN:
        stamp, (reason, tool) = entry[:STAMP_LEN], entry[STAMP_LEN:]
        return {"stamp": list(stamp), "rejected": reason, "tool": tool}
    return {"stamp": list(entry[:STAMP_LEN]), "original": _content(entry)}


def _content(entry: SourceEntry) -> dict[str, Any]:
    """The Original fields of a source entry, by name."""
    return dict(zip(_CONTENT_FIELDS, entry[STAMP_LEN:], strict=True))


OutputStamp = dict[str, Any]  # {"stamp": [size, mtime_ns, ctime_ns, inode], "sha256": ...}


def output_stamp(out: Path, path: str, sha256: str) -> OutputStamp | None:
    """The entry that says the file at `path` holds `sha256` now (None: it is not there)."""
    stamp = stamp_of(os.path.join(out, path))  # once per output: no pathlib object
    return None if stamp is None else {"stamp": list(stamp), "sha256": sha256}


def output_is_current(out: Path, path: str, sha256: str, entry: OutputStamp | None) -> bool:
    """True when the file at `path` still is what was written or verified as `sha256`,
    judged by its stamp alone (no read)."""
    return (
        entry is not None
        and entry.get("sha256") == sha256
        and stamp_of(out / path) == tuple(entry.get("stamp", ()))
    )


@dataclass
class RunState:
    sources: SourceCache
    last_run: dict[str, Any] | None = None  # see augment/uptodate.py
    # Reads the outputs' entries into a spill, on first use of `outputs`: a rerun proven
    # unchanged never needs them, so they have a file of their own that it never opens.
    read_outputs: Callable[[SortedSpill[OutputStamp | None]], None] | None = None
    _outputs: SortedSpill[OutputStamp | None] | None = None

    @property
    def outputs(self) -> SortedSpill[OutputStamp | None]:
        """The outputs' entries as the last run left them, by path (None: a damaged entry).
        Held on disk past a budget: a run reads them in path order, next to its other
        records."""
        if self._outputs is None:
            self._outputs = SortedSpill()
            if self.read_outputs is not None:
                self.read_outputs(self._outputs)
                self.read_outputs = None
        return self._outputs

    def close(self) -> None:
        self.read_outputs = None
        if self._outputs is not None:
            self._outputs.close()


def load_state(out: Path, src_root: Path) -> RunState:
    """The state an earlier run left in OUT; empty when absent, unreadable, or made for
    another source folder. The outputs' entries are read when first used; if they turn
    out damaged, none is used (those files are hashed again)."""
    root = str(src_root.resolve())
    try:
        doc = loads_json((out / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # json.JSONDecodeError included
        return RunState(SourceCache(root))
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or doc.get("root") != root:
        return RunState(SourceCache(root))
    sources = doc.get("sources")
    last_run = doc.get("last_run")
    if not isinstance(last_run, dict) or not all(
        isinstance(last_run.get(k), str) for k in ("inputs", "output")
    ):
        last_run = None
    entries = _source_entries(sources) if isinstance(sources, dict) else {}
    return RunState(SourceCache(root, entries), last_run, functools.partial(_read_outputs, out))


def _read_outputs(out: Path, spill: SortedSpill[OutputStamp | None]) -> None:
    """The outputs' entries, a JSON object a line, into `spill`. A line that is not one
    (a damaged file) drops them all: those files are hashed again."""
    try:
        with (out / OUTPUTS_STATE_NAME).open(encoding="utf-8") as lines:
            for line in lines:
                entry = loads_json(line)
                path = entry.pop("path", None) if isinstance(entry, dict) else None
                if not isinstance(path, str):
                    raise ValueError("no path")
                spill.add(path, entry if _well_formed_entry(entry, "sha256", str) else None, 450)
    except (OSError, UnicodeDecodeError, ValueError):
        spill.close()


def _well_formed_entry(entry: Any, key: str, kind: type) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get(key), kind)
        and isinstance(entry.get("stamp"), list)
        and len(entry["stamp"]) == STAMP_LEN
    )


def _source_entries(entries: dict[str, Any]) -> dict[str, SourceEntry]:
    """The in-memory form of the source entries that can be used; the others (hand-edited,
    damaged, or written by a version with other fields) are dropped: their files are
    simply read again."""
    usable = {}
    for path, entry in entries.items():
        if _well_formed_entry(entry, "original", dict) and entry["original"].keys() == _CONTENT:
            usable[path] = (*entry["stamp"], *_content_values(entry["original"]))
        elif _well_formed_entry(entry, "rejected", str) and entry.keys() == _REJECTED_KEYS:
            usable[path] = (*entry["stamp"], entry["rejected"], entry["tool"])
    return usable


def save_state(
    out: Path, state: RunState, outputs: Iterable[tuple[str, OutputStamp | None]]
) -> None:
    """Write the state, and `outputs` (path order; None entries left out) as the outputs'
    entries beside it, each file only if its bytes change."""
    file = ChangedFile(out / STATE_NAME)
    head: dict[str, Any] = {"format": STATE_FORMAT, "root": state.sources.root}
    if state.last_run is not None:
        head["last_run"] = state.last_run
    file.write(_ENCODE(head)[:-1].encode() + b',"sources":')
    sources = sorted(state.sources.entries.items())
    _write_object(file, ((path, _source_json(entry)) for path, entry in sources))
    file.write(b"}\n")
    file.commit()
    lines = ChangedFile(out / OUTPUTS_STATE_NAME)
    for chunk in _chunks((p, e) for p, e in outputs if e is not None):
        lines.write("".join(_ENCODE({"path": p, **e}) + "\n" for p, e in chunk).encode())
    lines.commit()


def _write_object(file: ChangedFile, items: Iterable[tuple[str, Any]]) -> None:
    """A JSON object of `items` as compact json.dumps writes it, encoded a thousand members
    at a time by json's C encoder rather than held whole."""
    separator = b"{"
    for chunk in _chunks(items):
        file.write(separator + _ENCODE(dict(chunk))[1:-1].encode())
        separator = b","
    file.write(b"{}" if separator == b"{" else b"}")


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _chunks(items: Iterable[Any], size: int = 1000) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


@contextlib.contextmanager
def exclusive_run(out: Path) -> Iterator[None]:
    """Hold a lock on the folder OUT for the run, so that a second `expand` into the same OUT
    fails at once instead of interleaving its writes and removals with this one's. The lock
    is the kernel's (flock): it goes away with the process, even after `kill -9`. It is taken
    on OUT itself, not on a file in it, so that a run refused before its first write (a
    --force run that would overwrite) leaves nothing behind. Where flock does not exist
    (Windows), runs are not guarded."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    handle = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{out} is being written by another augment run; wait for it to end"
            ) from None
        yield
    finally:
        os.close(handle)  # releases the lock
