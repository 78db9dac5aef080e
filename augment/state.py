"""Per-machine run state in `OUT/.augment/state.json`: what a rerun may trust without reading.

A rerun of an unchanged dataset must cost a small fraction of the first run, and most of
that cost would be reading and hashing every source and every output again. Like `make`,
git's index or DVC's state database, this file remembers a file's stamp (size, mtime_ns,
inode) next to what its bytes were found to be:

- `sources`: per source path, the stamp and the `Original` fields read from its bytes
  (sha256, format, size in pixels), so an unchanged source is only `stat`-ed;
- `outputs`: per output path, the stamp and the sha256 it had when this tool wrote or last
  verified it, so an unchanged output is only `stat`-ed; a different size *or* mtime (or
  inode) means the file is read and hashed again, and made again if its bytes are wrong;
- `last_run`: digests of what the last complete run was made from and of OUT as it left
  it, so a rerun that matches both returns at once (see augment/uptodate.py).

Stamps are per machine, so they live here and never in `manifest.jsonl`, whose bytes must
be the same on every machine. The file is rewritten only when its content changes, so a
no-op rerun leaves it untouched as well. A missing or unreadable state only costs a rehash.

An output is stamped right after this tool wrote it: only a change made within the same
mtime tick, at the same size and inode, could slip past, and nothing but this tool writes
there. Sources are edited by people and scripts, so for them the "racy" rule of git's
index applies: a source whose mtime is within `RACY_NS` of the moment it was read could
still be rewritten within the same timestamp tick (coarse clocks, FAT, network file
systems) at the same size, so its stamp proves nothing and it is not remembered.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from augment.errors import OutputError
from augment.ingest import Original
from augment.manifest import STATE_DIR
from augment.writer import write_if_changed

STATE_NAME = f"{STATE_DIR}/state.json"
STATE_FORMAT = "augment-state/1"
LOCK_NAME = f"{STATE_DIR}/lock"
RACY_NS = 2_000_000_000  # coarser than any common file system's mtime granularity

Stamp = tuple[int, int, int]  # size, mtime_ns, inode

# Fields of Original that come from the file's bytes (the rest come from its listing).
_LISTING_FIELDS = ("path", "label", "group")
_CONTENT_FIELDS = tuple(f.name for f in fields(Original) if f.name not in _LISTING_FIELDS)


def stamp_of(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class SourceCache:
    """Original fields of sources by path, valid while the file's stamp is unchanged."""

    root: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: int = 0
    reads: int = 0
    # Sources whose bytes had to be read (or tried: a rejected one counts too), because
    # no remembered stamp vouched for them. Only a run with none can be proven a no-op.
    misses: int = 0

    stamp = staticmethod(stamp_of)

    def lookup(self, rel: str, path: Path) -> Original | None:
        """The cached Original for an unchanged file (label and group still to be set)."""
        entry = self.entries.get(rel)
        if entry is None or stamp_of(path) != tuple(entry["stamp"]):
            return None
        try:
            original = Original(path=rel, label="", group="", **entry["original"])
        except TypeError:  # written by a version with other fields: read the file again
            return None
        self.hits += 1
        return original

    def remember(self, rel: str, before: Stamp | None, path: Path, original: Original) -> None:
        """Record what `original` was read from, if the file held still and is not racy.

        `before` is the stamp taken before the bytes were read: a file that changed while
        being read, or was modified too recently to be told apart by its mtime, is not kept.
        """
        self.reads += 1
        if before is None or stamp_of(path) != before:
            self.entries.pop(rel, None)
            return
        if time.time_ns() - before[1] <= RACY_NS:
            self.entries.pop(rel, None)
            return
        content = asdict(original)
        self.entries[rel] = {
            "stamp": list(before),
            "original": {k: content[k] for k in _CONTENT_FIELDS},
        }

    def keep_only(self, paths: set[str]) -> None:
        for rel in set(self.entries) - paths:
            del self.entries[rel]


@dataclass
class RunState:
    sources: SourceCache
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> stamp, sha256
    last_run: dict[str, str] | None = None  # see augment/uptodate.py

    def output_is_current(self, out: Path, path: str, sha256: str) -> bool:
        """True when the file at `path` still is what was written or verified as `sha256`,
        judged by its stamp alone (no read)."""
        entry = self.outputs.get(path)
        return (
            entry is not None
            and entry.get("sha256") == sha256
            and stamp_of(out / path) == tuple(entry.get("stamp", ()))
        )

    def record_output(self, out: Path, path: str, sha256: str) -> None:
        stamp = stamp_of(out / path)
        if stamp is None:
            self.outputs.pop(path, None)
        else:
            self.outputs[path] = {"stamp": list(stamp), "sha256": sha256}

    def keep_outputs(self, paths: set[str]) -> None:
        for path in set(self.outputs) - paths:
            del self.outputs[path]

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "format": STATE_FORMAT,
            "root": self.sources.root,
            "sources": dict(sorted(self.sources.entries.items())),
            "outputs": dict(sorted(self.outputs.items())),
        }
        if self.last_run is not None:
            doc["last_run"] = self.last_run
        return doc


def load_state(out: Path, src_root: Path) -> RunState:
    """The state an earlier run left in OUT; empty when absent, unreadable, or made for
    another source folder."""
    root = str(src_root.resolve())
    empty = RunState(SourceCache(root))
    try:
        doc = json.loads((out / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return empty
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        return empty
    sources = doc.get("sources") if doc.get("root") == root else {}
    outputs = doc.get("outputs")
    if not isinstance(sources, dict) or not isinstance(outputs, dict):
        return empty
    last_run = doc.get("last_run") if doc.get("root") == root else None
    if not isinstance(last_run, dict) or not all(isinstance(v, str) for v in last_run.values()):
        last_run = None
    return RunState(
        SourceCache(root, _well_formed(sources, "original", dict)),
        _well_formed(outputs, "sha256", str),
        last_run,
    )


def _well_formed(entries: dict[str, Any], key: str, kind: type) -> dict[str, dict[str, Any]]:
    """The entries of a hand-edited or damaged state that can be used; the rest are dropped
    (their files are simply read again)."""
    return {
        path: entry
        for path, entry in entries.items()
        if isinstance(entry, dict)
        and isinstance(entry.get(key), kind)
        and isinstance(entry.get("stamp"), list)
        and len(entry["stamp"]) == 3
    }


def save_state(out: Path, state: RunState) -> None:
    text = json.dumps(state.to_dict(), separators=(",", ":")) + "\n"
    write_if_changed(out / STATE_NAME, text.encode("utf-8"))


@contextlib.contextmanager
def exclusive_run(out: Path) -> Iterator[None]:
    """Hold `OUT/.augment/lock` for the run, so that a second `expand` into the same OUT
    fails at once instead of interleaving its writes and removals with this one's. The
    lock is the kernel's (flock): it goes away with the process, even after `kill -9`.
    Where flock does not exist (Windows), runs are not guarded."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = out / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{out} is being written by another augment run; wait for it to end"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
