"""A run's outputs published into a store OUT, shard by shard, each shard's records last.

The manifest's records are cut into shards by their source: a shard id is a hash of the
first source's path modulo `SHARD_COUNT`, so an output stays in its shard from run to run.
A shard is committed by its records object, `.augment/shards/<id>-<digest>.jsonl` (the
digest of the records it holds), written create-only after every output it lists: a
committed shard's outputs are all there, so a resumed run skips it without reading them.
The same records go to `.augment/pending/` before the outputs and are deleted after the
commit: what a run that died mid-shard wrote is found from them, and removed if no longer
made (two requests a shard, against outputs no record would name).
The manifest is then assembled from the committed records, read back from the store and
merged in path order: byte for byte the manifest the run wrote locally.

Outputs are written create-only (S3: `If-None-Match: *`); an object already there with the
same bytes (its ETag is their MD5 on S3) is left alone. botocore sends a CRC32 of every PUT
body, which S3 checks before it stores the object (a checksummed PUT).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from augment.errors import OutputError
from augment.layout import MANIFEST_NAME, STATE_DIR
from augment.model import ExpandSummary
from augment.stores.lease import LEASE_NAME, Lease
from augment.stores.store import Entry, Store

SHARD_COUNT = 256  # fixed: changing it moves every output to another shard
SHARDS_DIR = f"{STATE_DIR}/shards"
# A shard's records before its outputs: the outputs a run that died might have left.
PENDING_DIR = f"{STATE_DIR}/pending"
RUN_NAME = f"{STATE_DIR}/store-run.json"  # written last by a complete run
# What makes a sharded store OUT augment's before its first run completes.
OUTPUT_MARK = f"{STATE_DIR}/output.json"


@dataclass
class Published:
    """What publishing did, for the summary and the tests."""

    shards: list[str] = field(default_factory=list)  # the committed records, in id order
    written: int = 0  # objects written (outputs, records, header files)
    outputs: int = 0  # of which outputs
    kept: set[str] = field(default_factory=set)  # every object of this run: outputs, records...
    skipped_shards: int = 0  # committed by an earlier (perhaps killed) run
    removed: int = 0


def shard_of(record: dict[str, object]) -> int:
    sources = record.get("sources")
    first = sources[0] if isinstance(sources, list) and sources else {}
    key = str(first.get("path", record["path"]) if isinstance(first, dict) else record["path"])
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % SHARD_COUNT


def cut_into_shards(manifest: bytes) -> dict[int, list[bytes]]:
    """The manifest's lines by shard, each shard's in the manifest's (path) order."""
    shards: dict[int, list[bytes]] = defaultdict(list)
    for line in manifest.splitlines(keepends=True):
        shards[shard_of(json.loads(line))].append(line)
    return dict(sorted(shards.items()))


def shard_name(shard: int, lines: list[bytes]) -> str:
    digest = hashlib.sha256(b"".join(lines)).hexdigest()[:16]
    return f"{SHARDS_DIR}/{shard:05d}-{digest}.jsonl"


def publish(
    store: Store, staged: Path, lease: Lease, force: bool = False, last: Iterable[str] = ()
) -> Published:
    """Bring the store OUT to what the run wrote in `staged`; see the module's docstring.
    `last`: the objects the last complete run left, removed if this run does not make them."""
    there = {e.path: e for e in store.list()}
    check_ours(store, there, force)
    manifest = (staged / MANIFEST_NAME).read_bytes()
    done = Published()
    for shard, lines in cut_into_shards(manifest).items():
        name = shard_name(shard, lines)
        done.shards.append(name)
        committed = name in there
        if committed and all(_listed(there, line) for line in lines):
            done.skipped_shards += 1
            continue
        # A committed shard whose output someone deleted since gets it back.
        pending = PENDING_DIR + name[len(SHARDS_DIR) :]
        if not committed:
            _create_or_keep(store, pending, b"".join(lines))
        before = done.outputs
        for line in lines:
            path = json.loads(line)["path"]
            done.outputs += write_output(store, path, (staged / path).read_bytes(), there)
        done.written += done.outputs - before
        if not committed:
            lease.check()  # a run that lost its lease must not commit
            _create_or_keep(store, name, b"".join(lines))
            store.delete(pending)
            done.written += 2
    assembled = assemble(store, done.shards)
    if assembled != manifest:
        raise OutputError(
            f"output {store.url}: the records read back from its shards are not the "
            "manifest this run wrote (changed meanwhile by another writer?); rerun"
        )
    headers = _header_files(staged)
    for path in headers:
        done.written += write_output(store, path, (staged / path).read_bytes(), there, True)
    done.written += write_output(store, MANIFEST_NAME, manifest, there, True)
    keep = {json.loads(line)["path"] for line in manifest.splitlines()}
    keep |= {*headers, MANIFEST_NAME}
    done.kept = keep | set(done.shards)
    removed = remove_stale(store, there, done.shards, keep)
    done.removed = len(removed)
    # What the last complete run wrote and this one does not: a split's metadata.csv, say.
    for path in sorted(set(last) - keep - removed):
        if path in there and not path.startswith(STATE_DIR + "/"):
            store.delete(path)
    return done


def publish_beside_shards(
    store: Store, staged: Path, summary: ExpandSummary, last: Iterable[str] = ()
) -> Published:
    """A sharded run's header files and manifest written beside the shards the workers
    committed to the store (augment/writers/store_shards.py), and what the last complete
    run wrote that this one does not (its stale shards are removed already) deleted."""
    there = {e.path: e for e in store.list() if not e.path.startswith(("shards/", "records/"))}
    done = Published(outputs=summary.written, removed=summary.removed)
    headers = [*_header_files(staged), MANIFEST_NAME]
    for path in headers:
        done.written += write_output(store, path, (staged / path).read_bytes(), there, True)
    done.kept = {*headers, OUTPUT_MARK}
    done.kept |= {e.path for e in store.list("shards")} | {e.path for e in store.list("records")}
    for path in sorted(set(last) - done.kept):
        if path in there and not path.startswith(STATE_DIR + "/"):
            store.delete(path)
    return done


def _listed(there: dict[str, Entry], line: bytes) -> bool:
    """Whether the record's output is in the listing, at the size the record gives."""
    record = json.loads(line)
    entry = there.get(record["path"])
    return entry is not None and entry.size == record.get("size")


def check_ours(store: Store, there: dict[str, Entry], force: bool) -> None:
    """A store OUT with objects, none of them augment's, is someone else's (unless --force:
    then nothing of theirs is deleted, as for a folder)."""
    ours = any(p.startswith(STATE_DIR + "/") and p != LEASE_NAME for p in there)
    others = [p for p in there if p != LEASE_NAME]
    if others and not ours and not force:
        raise OutputError(
            f"output {store.url} is not empty and is not an augment output (no "
            f"{STATE_DIR}/ objects); choose an empty prefix, or add --force to write next to "
            "what is there (nothing in it is deleted or overwritten)"
        )


def write_output(
    store: Store, path: str, data: bytes, there: dict[str, Entry], replace: bool = False
) -> int:
    """1 if `path` was written, 0 if the store already had these bytes there. An object of
    other bytes under an output's name is replaced only where `replace` says it is ours to
    rewrite (the header files); an output is named by its inputs, so two versions of one
    are a fault, reported."""
    entry = there.get(path)
    if entry is not None and same_bytes(store, entry, data):
        return 0
    if entry is None:
        try:
            store.create(path, data)
            return 1
        except FileExistsError:
            entry = store.info(path)
            if entry is not None and same_bytes(store, entry, data):
                return 0
    if not replace:
        raise OutputError(
            f"output {store.url}/{path} exists with other bytes than this run makes for it "
            "(written by another tool or version?); remove it and rerun"
        )
    store.put(path, data)
    return 1


def same_bytes(store: Store, entry: Entry, data: bytes) -> bool:
    """Whether the object is `data`: by its ETag where that is the MD5 of the bytes (an S3
    PUT of one part), else by reading it."""
    if entry.size != len(data):
        return False
    if store.protocol == "s3" and len(entry.etag) == 32 and "-" not in entry.etag:
        return entry.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    try:
        return store.read(entry.path) == data
    except FileNotFoundError:
        return False


def assemble(store: Store, shards: Iterable[str]) -> bytes:
    """The manifest: every committed shard's records, merged in path order."""
    parts: list[list[bytes]] = [store.read(name).splitlines(keepends=True) for name in shards]
    merged: Iterable[bytes] = heapq.merge(*parts, key=lambda line: json.loads(line)["path"])
    return b"".join(merged)


def remove_stale(
    store: Store, there: dict[str, Entry], shards: list[str], keep: set[str]
) -> set[str]:
    """Delete what earlier runs committed, or began to, and this one does not make (`keep`):
    the outputs their shard records (and pending ones) list, then those records. Returns
    the outputs deleted."""
    # This run's own records, and the pending ones it has committed (and so deleted).
    current = set(shards) | {PENDING_DIR + name[len(SHARDS_DIR) :] for name in shards}
    removed: set[str] = set()
    for path in sorted(there):
        record = path.startswith((SHARDS_DIR + "/", PENDING_DIR + "/"))
        if not record or path in current:
            continue
        for line in store.read(path).splitlines():
            output = json.loads(line)["path"]
            if output not in keep and output in there and output not in removed:
                store.delete(output)
                removed.add(output)
        store.delete(path)
    return removed


def _create_or_keep(store: Store, name: str, data: bytes) -> None:
    with contextlib.suppress(FileExistsError):  # committed meanwhile: the name is the content
        store.create(name, data)


def _header_files(staged: Path) -> list[str]:
    """Every file of the local run but its outputs, the manifest and its state: the header,
    classes.json, the card, metadata.csv and annotation files."""
    outputs = {
        json.loads(line)["path"] for line in (staged / MANIFEST_NAME).read_bytes().splitlines()
    }
    found = []
    for path in sorted(staged.rglob("*")):
        rel = path.relative_to(staged).as_posix()
        mine = rel in outputs or rel == MANIFEST_NAME or rel.startswith(STATE_DIR + "/")
        if path.is_file() and not mine:
            found.append(rel)
    return found
