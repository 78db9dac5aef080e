"""Sharded outputs in a store OUT (`s3://...`): the worker writes its shard and records to
the store itself, and the driver decides from one listing which shards are committed.

- **The worker** (`StorePlacement`, behind `ShardFile`): each file is streamed to a local
  temporary (never the whole shard in memory), then written with one create-only upload
  (S3: `If-None-Match: *`, a multipart upload for a large shard), the shard first and its
  records last, the commit marker. A shard already there with the same bytes (a task run
  again after its worker was killed between the two uploads) is taken as written.
- **The driver** (`StoreShards`): a shard is committed when its records object ends with a
  commit line naming these inputs and the shard's listed size; that line is read with one
  ranged GET from the end. A shard to make again is uncommitted first (its records, then
  the shard, deleted), so each upload can be create-only and a killed run leaves nothing
  a later run takes for done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from augment.errors import OutputError
from augment.model import Rejected
from augment.stages.manifest import Record
from augment.stores.store import Entry, Store
from augment.writers.shards import (
    _SHARD_NAME,
    RECORDS_DIR,
    SHARDS_DIR,
    kept_rejections,
    last_line_commit,
    records_name,
)

_TAIL = 1 << 16  # the first ranged read of a records object's end: its commit line
_CHUNK = 1 << 23  # a records object is read back in ranges of this many bytes


class StorePlacement:
    """A shard's files written to a local temporary each, then uploaded create-only."""

    def __init__(self, url: str) -> None:
        self.store = Store(url)
        self._temps: dict[str, str] = {}

    def open(self, rel: str) -> BinaryIO:
        fd, temp = tempfile.mkstemp(prefix="augment-shard-")
        self._temps[rel] = temp
        return os.fdopen(fd, "wb")

    def local(self, rel: str) -> Path:
        return Path(self._temps[rel])

    def finish(self, rel: str) -> None:
        temp = self._temps[rel]
        try:
            self.store.create_file(rel, temp)
        except FileExistsError:
            if not self._same(rel, temp):
                raise FileExistsError(
                    f"{rel} exists with other bytes (another run writing this output?)"
                ) from None
        self.drop(rel)

    def _same(self, rel: str, temp: str) -> bool:
        entry = self.store.info(rel)
        if entry is None or entry.size != os.path.getsize(temp):
            return False
        with open(temp, "rb") as f:
            data = f.read()
        if self.store.protocol == "s3" and len(entry.etag) == 32:  # a one-part PUT's MD5
            return entry.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self.store.read(rel) == data

    def drop(self, rel: str) -> None:
        temp = self._temps.pop(rel, None)
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def error(self, rel: str, exc: OSError) -> Exception:
        return OutputError(f"output {self.store.url}/{rel}: {exc}")


class StoreShards:
    """The shards of a store OUT as one listing shows them (taken when made)."""

    def __init__(self, url: str) -> None:
        self.store = Store(url)
        self.there: dict[str, Entry] = {}
        self.relist()

    def relist(self) -> None:
        """The listing taken again (after the workers' commits: one LIST per 1,000
        objects, where a HEAD of each new records object would be one request each)."""
        listed = [*self.store.list(SHARDS_DIR), *self.store.list(RECORDS_DIR)]
        self.there = {e.path: e for e in listed}

    def committed(self, name: str, inputs: str) -> list[Rejected] | None:
        """As `shards.committed`, from the listing and the records' tail."""
        shard, records = self.there.get(f"{SHARDS_DIR}/{name}"), self.there.get(records_name(name))
        if shard is None or records is None:
            return None
        tail, size = b"", _TAIL
        while True:
            try:
                tail = self.store.read_tail(records, size).rstrip(b"\n")
            except FileNotFoundError:
                return None
            if b"\n" in tail or size >= records.size:
                break
            size *= 4
        return kept_rejections(last_line_commit(tail), name, inputs, shard.size)

    def uncommit(self, names: Iterable[str]) -> None:
        """Before shards are made again: their records, then the shards, deleted."""
        for name in names:
            for path in (records_name(name), f"{SHARDS_DIR}/{name}"):
                if path in self.there:
                    self.store.delete(path)
                    del self.there[path]

    def records(self, name: str) -> Iterator[Record]:
        """A committed shard's records, read from the store in ranged GETs of `_CHUNK` (no
        HEAD: the size is the listing's), in shard order."""
        entry = self.there.get(records_name(name))
        if entry is None:  # committed by a worker, gone from the listing since
            raise OutputError(
                f"output {self.store.url}/{records_name(name)} is missing (deleted by another "
                "writer during the run?); rerun"
            )
        rest = b""
        for start in range(0, entry.size, _CHUNK):
            end = min(entry.size, start + _CHUNK)
            data = rest + self.store.read_range(entry.path, start, end)
            *lines, rest = data.split(b"\n")
            yield from _records(lines)
        yield from _records([rest])

    def remove_others(self, names: Iterable[str]) -> int:
        """Shards (and records) named as augment names them that this run does not make,
        each one's records first. Returns how many objects were deleted."""
        keep = {f"{SHARDS_DIR}/{n}" for n in names} | {records_name(n) for n in names}
        stale = [
            p
            for p in sorted(self.there, key=lambda p: not p.startswith(RECORDS_DIR + "/"))
            if p not in keep and p.count("/") == 1 and _SHARD_NAME.fullmatch(p.partition("/")[2])
        ]
        for path in stale:
            self.store.delete(path)
            del self.there[path]
        return len(stale)


def _records(lines: Iterable[bytes]) -> Iterator[Record]:
    for line in lines:
        if line.strip():
            record = json.loads(line)
            if "commit" not in record:
                yield record
