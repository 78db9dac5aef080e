"""SRC through a store: its identity from the listing, its bytes staged for the run.

A source's identity is what the listing says, (path, size, ETag): listing 10^7 objects is
10^4 LIST requests, and no object is read to learn that it is unchanged. Its sha256 is
computed on its first read and remembered in OUT's run state under its ETag, so a later
read of the same version is checked against it.

For folder outputs, a labels file or an annotated layout the bytes are staged: each object
is read once through the store into a local working folder, with the same relative paths,
and the run's ingest and workers read that copy. So the records (source paths relative to
SRC, their sha256) are the ones a local run of the same files writes. Sharded outputs from
class folders are not staged: the driver ingests from the listing (augment/stores/listed.py)
and the workers read the store (augment/stages/shard_worker.py).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from augment.errors import DatasetError
from augment.stores.store import Entry, Store
from augment.stores.url import is_url

READERS = 8  # objects read at once: a GET waits on the network, not on a core


@dataclass(frozen=True)
class Source:
    """SRC as a store: `store` holds its objects, `name` the labels file in it (if any)."""

    store: Store
    name: str | None
    entries: list[Entry]


def open_source(src: str) -> Source:
    """SRC listed: a folder (prefix) of images, or a labels file with its folder."""
    store = Store(src if is_url(src) else Path(src).resolve().as_uri())
    entries = store.list()
    if entries:
        return Source(store, None, entries)
    # Not a prefix with objects below it: a labels file, whose folder is the source.
    parent, _, name = store.url.rpartition("/")
    if name and store.info("") is not None:
        folder = Store(parent)
        return Source(folder, name, folder.list())
    raise DatasetError(f"source {src}: no objects there (or it cannot be listed)")


def listing(source: Source) -> list[list[object]]:
    """The source's identity, as the rerun digest covers it."""
    return [[e.path, e.size, e.etag] for e in source.entries]


def stage(source: Source, folder: Path, known: dict[str, str]) -> dict[str, str]:
    """Read every object of the source into `folder`. Returns ETag -> sha256 for every
    object read; `known` (from the last run) must agree with what the same ETag gives now."""
    folder.mkdir(parents=True, exist_ok=True)

    def read(entry: Entry) -> tuple[str, str]:
        data = source.store.read(entry.path)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != entry.size or known.get(entry.etag, digest) != digest:
            raise DatasetError(
                f"source {source.store.url}/{entry.path} changed while it was read (its "
                "bytes are not the version its listing names); rerun when it is settled"
            )
        target = folder / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return entry.etag, digest

    with ThreadPoolExecutor(READERS) as pool:
        return dict(pool.map(read, source.entries))


def staged_path(source: Source, folder: Path) -> Path:
    """What the local run ingests: the staged folder, or the labels file in it."""
    return folder / source.name if source.name else folder
