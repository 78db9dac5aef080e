"""Per-machine run state in `OUT/.augment/state.json`: what a rerun may trust without reading.

A rerun of an unchanged dataset must cost a small fraction of the first run, and most of
that cost would be reading and hashing every source and every output again. Like `make`,
git's index or DVC's state database, this file remembers a file's stamp (size, mtime_ns,
inode) next to what its bytes were found to be:

- `sources`: per source path, the stamp and the `Original` fields read from its bytes
  (sha256, format, size in pixels), or the reason its bytes are not an image, so an
  unchanged source is only `stat`-ed;
- `outputs`: per output path, the stamp and the sha256 it had when this tool wrote or last
  verified it, so an unchanged output is only `stat`-ed; a different size *or* mtime (or
  inode) means the file is read and hashed again, and made again if its bytes are wrong;
- `last_run`: digests of what the last complete run was made from and of OUT as it left
  it, so a rerun that matches both returns at once, and the duplicate clusters that run
  found (see augment/uptodate.py).

Stamps are per machine, so they live here and never in `manifest.jsonl`, whose bytes must
be the same on every machine. The file is rewritten only when its content changes, so a
no-op rerun leaves it untouched as well. A missing or unreadable state only costs a rehash.
There is an output entry per output file: they are read one at a time into a `SortedSpill`
and written from the run's records in path order, never held as one dict. They come last
in the file and are read when first used, so a rerun proven unchanged stops before them.

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
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from augment.errors import OutputError
from augment.files import ChangedFile
from augment.layout import STATE_NAME
from augment.model import Original, Rejected
from augment.rerun.spill import SortedSpill

STATE_FORMAT = "augment-state/1"
RACY_NS = 2_000_000_000  # coarser than any common file system's mtime granularity

Stamp = tuple[int, int, int]  # size, mtime_ns, inode

# Fields of Original that come from the file's bytes (the rest come from its listing, or,
# for an annotation, from files the state does not stamp).
_CONTENT_FIELDS = ("sha256", "format", "width", "height")
_CONTENT = frozenset(_CONTENT_FIELDS)
_content_values = operator.itemgetter(*_CONTENT_FIELDS)
_REJECTED_KEYS = {"stamp", "rejected", "tool"}


def stamp_of(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


# A source's entry as held in memory: its stamp's three fields, then the Original fields
# named by _CONTENT_FIELDS, in that order, or, for a file whose bytes are not an image,
# the reason and the tool that found it. One flat tuple takes ~200 bytes a source where
# the JSON-shaped {"stamp": [...], "original": {...}} took ~570, and the cache holds an
# entry per source for the whole run (in every pool process forked from it, too).
SourceEntry = tuple[Any, ...]
_REJECTED_LEN = 5  # stamp, reason, tool


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

    def lookup(
        self, rel: str, stamp: Stamp | None, label: str, group: str
    ) -> Original | Rejected | None:
        """What a file whose stamp, just taken, is the remembered one was found to be: its
        Original, with the label and group its listing gives now, or why it is no image."""
        entry = self.entries.get(rel)
        if entry is None or stamp is None or stamp != entry[:3]:
            return None
        rejected = len(entry) == _REJECTED_LEN
        if rejected and entry[4] != self.tool:
            return None
        self.hits += 1
        if rejected:
            return Rejected(rel, entry[3])
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
        return {"stamp": list(entry[:3]), "rejected": entry[3], "tool": entry[4]}
    return {"stamp": list(entry[:3]), "original": _content(entry)}


def _content(entry: SourceEntry) -> dict[str, Any]:
    """The Original fields of a source entry, by name."""
    return dict(zip(_CONTENT_FIELDS, entry[3:], strict=True))


OutputStamp = dict[str, Any]  # {"stamp": [size, mtime_ns, inode], "sha256": ...}


def output_stamp(out: Path, path: str, sha256: str) -> OutputStamp | None:
    """The entry that says the file at `path` holds `sha256` now (None: it is not there)."""
    stamp = stamp_of(out / path)
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
    # unchanged never needs them, and they are most of the file (0.17 s at 10,000).
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
        text = (out / STATE_NAME).read_text(encoding="utf-8")
        doc, outputs = _parse_state(text)
    except (OSError, UnicodeDecodeError, ValueError):  # json.JSONDecodeError included
        return RunState(SourceCache(root))
    sources = doc.get("sources") if doc.get("root") == root else {}
    if doc.get("format") != STATE_FORMAT or not isinstance(sources, dict) or outputs is None:
        return RunState(SourceCache(root))
    last_run = doc.get("last_run") if doc.get("root") == root else None
    if not isinstance(last_run, dict) or not all(
        isinstance(last_run.get(k), str) for k in ("inputs", "output")
    ):
        last_run = None

    def read_outputs(spill: SortedSpill[OutputStamp | None]) -> None:
        def output(path: str, entry: Any) -> None:
            spill.add(path, entry if _well_formed_entry(entry, "sha256", str) else None, 450)

        try:
            outputs(output, spill.close)
        except ValueError:
            spill.close()

    return RunState(SourceCache(root, _source_entries(sources)), last_run, read_outputs)


_PARSE_WHOLE = 1 << 19  # bytes: a state this small (~3,000 outputs) is parsed at once

# Hands each output entry to `output(path, entry)`; `restart()` drops those handed so far.
OutputsReader = Callable[[Callable[[str, Any], None], Callable[[], None]], None]


class _OutputsFound(Exception):
    """The streaming parse reached the outputs' object, at `pos`: the rest waits."""

    def __init__(self, pos: int) -> None:
        self.pos = pos


def _parse_state(text: str) -> tuple[dict[str, Any], OutputsReader | None]:
    """The state document but its outputs' entries, and what reads those (None when it has
    no object of them). A small state is parsed at once, which is quicker. A large one is
    parsed up to the outputs' object, which the writer puts last; the reader parses it
    entry by entry, never holding them all, then checks that the document ends well (a
    repeated key: the last one counts, as in json.loads). A member after the outputs, as
    an earlier version wrote `last_run`, is only read by the reader, so not used."""
    if len(text) <= _PARSE_WHOLE:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        entries = doc.pop("outputs", None)
        if not isinstance(entries, dict):
            return doc, None

        def hand_over(output: Callable[[str, Any], None], restart: Callable[[], None]) -> None:
            for path, entry in entries.items():
                output(path, entry)

        return doc, hand_over
    doc: dict[str, Any] = {}

    def member(key: str, pos: int) -> int:
        if key == "outputs":
            raise _OutputsFound(pos)
        doc[key], end = _DECODER.raw_decode(text, pos)
        return end

    try:
        end = _scan_object(text, 0, member)
    except _OutputsFound as found:
        return doc, functools.partial(_read_outputs, text, found.pos)
    if text[end:].strip(_WHITESPACE):
        raise ValueError("extra data")
    return doc, None


def _read_outputs(
    text: str, pos: int, output: Callable[[str, Any], None], restart: Callable[[], None]
) -> None:
    """Parse the outputs' object at `text[pos]` into `output`, then the rest of the state."""

    def entry(path: str, pos: int) -> int:
        value, end = _DECODER.raw_decode(text, pos)
        output(path, value)
        return end

    def member(key: str, pos: int) -> int:
        if key == "outputs":
            restart()
            return _scan_object(text, pos, entry)
        return _DECODER.raw_decode(text, pos)[1]

    pos = _skip(text, _scan_object(text, pos, entry))
    if text.startswith(",", pos):
        pos = _scan_members(text, _skip(text, pos + 1), member)
    elif text.startswith("}", pos):
        pos += 1
    else:
        raise ValueError("no ','")
    if text[pos:].strip(_WHITESPACE):
        raise ValueError("extra data")


_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def _scan_object(text: str, pos: int, member: Callable[[str, int], int]) -> int:
    """Parse the JSON object at `text[pos]` (after any whitespace) one member at a time:
    `member(key, position of its value)` parses the value and returns where it ends.
    Returns the position after the object; raises ValueError where it is not one."""
    pos = _skip(text, pos)
    if not text.startswith("{", pos):
        raise ValueError("not an object")
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        return pos + 1
    return _scan_members(text, pos, member)


def _scan_members(text: str, pos: int, member: Callable[[str, int], int]) -> int:
    """The members of an object from the key at `text[pos]` to the object's end (see
    `_scan_object`); returns the position after it."""
    while True:
        if not text.startswith('"', pos):
            raise ValueError("not a key")
        key, pos = scanstring(text, pos + 1)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise ValueError("no ':'")
        pos = _skip(text, member(key, _skip(text, pos + 1)))
        if text.startswith("}", pos):
            return pos + 1
        if not text.startswith(",", pos):
            raise ValueError("no ','")
        pos = _skip(text, pos + 1)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _well_formed_entry(entry: Any, key: str, kind: type) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get(key), kind)
        and isinstance(entry.get("stamp"), list)
        and len(entry["stamp"]) == 3
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
    """Write the state with `outputs` (path order; None entries left out) as its output
    entries, as one compact JSON document, only if its bytes change."""
    file = ChangedFile(out / STATE_NAME)
    head = {"format": STATE_FORMAT, "root": state.sources.root}
    file.write(_ENCODE(head)[:-1].encode() + b',"sources":')
    sources = sorted(state.sources.entries.items())
    _write_object(file, ((path, _source_json(entry)) for path, entry in sources))
    if state.last_run is not None:
        file.write(b',"last_run":' + _ENCODE(state.last_run).encode())
    # Last: a rerun proven unchanged stops reading before them (see _parse_state).
    file.write(b',"outputs":')
    _write_object(file, ((path, entry) for path, entry in outputs if entry is not None))
    file.write(b"}\n")
    file.commit()


def _write_object(file: ChangedFile, items: Iterable[tuple[str, Any]]) -> None:
    """A JSON object of `items` as compact json.dumps writes it, encoded a thousand members
    at a time by json's C encoder rather than held whole."""
    separator = b"{"
    for chunk in _chunks(items, 1000):
        file.write(separator + _ENCODE(dict(chunk))[1:-1].encode())
        separator = b","
    file.write(b"{}" if separator == b"{" else b"}")


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
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
