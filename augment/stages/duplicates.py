"""Keeping duplicate originals together, before the holdout.

The same photo saved twice, a resized or re-encoded copy, or a mirrored one: if one copy
lands in train and the other in validation, validation measures memory, not generalisation.
So before the holdout, every original is hashed (`similarity.phash_bytes`, from a small
decode). Originals whose bytes are equal always form one *cluster*; beyond that a cluster is
a star: one original and the others whose hashes are within the threshold of it, the mirror
included (`similarity.pair_max_distance`: a tighter one for images under 32 pixels a side).
Pairs are not merged transitively: look-alikes (handwritten "1"s) came within the threshold
of one another in chains, and a chain of over half of 100 MNIST "1"s landed in one split. A
cluster's groups are merged into one group key, the one `holdout.assign_splits` keeps in one
split (see docs/holdout.md for the rule, its tolerance and measured false-merge rates).

Hashes are stored in `augment.json` (per original, next to its sha256) and reused on a rerun
when the sha256 matches, so only new or changed originals are decoded again. A first run
hashes each source from the bytes ingest has read for its sha256 (`SourceHasher`), in threads
beside the reading, so each source is read once and the hashing overlaps the reading.

Splits are sticky: when an earlier run already put two originals that now form a cluster in
different splits (a copy added later), neither is moved; the cluster is reported as a
conflict instead (and `augment audit` will flag it).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from augment.errors import UnreadableImage
from augment.imaging.digests import ImageHash
from augment.model import Cluster, Original, Phase
from augment.rerun.heap import return_free_heap
from augment.stages.near_graph import near_graph, star_clusters


@dataclass
class Grouping:
    originals: list[Original]  # with merged group keys
    hashes: dict[str, ImageHash]  # original path -> hash (unreadable files absent)
    clusters: list[Cluster]  # merged: kept in one split
    conflicts: list[Cluster]  # already split apart by an earlier run: left where they are
    hashed: int = 0  # how many originals had to be decoded (hashes not reused)

    @property
    def found(self) -> list[list[str]]:
        """Every cluster's paths, merged or not: what `group_duplicates(found=...)` takes."""
        return [list(c.paths) for c in (*self.clusters, *self.conflicts)]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            groups.setdefault(self.find(i), []).append(i)
        return list(groups.values())


def _hash_of(data: bytes | None) -> ImageHash | None:
    """None for a file that could not be read or decoded: the worker rejects it with the
    reason."""
    from augment.imaging.similarity import phash_bytes  # see the note at `_similar`

    if data is None:
        return None
    try:
        return phash_bytes(data)
    except (OSError, UnreadableImage):
        return None


def _hash_files(paths: Sequence[Path]) -> list[ImageHash | None]:
    hashes: list[ImageHash | None] = []
    for path in paths:
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        hashes.append(_hash_of(data))
    return hashes


# Files a hashing thread takes at a time: one future per file cost ~40 us each in the
# thread pool's hand-offs, as much as hashing a small image (measured at 80x60: 0.21 ms a
# file with two threads one file at a time, 0.10 ms sixteen at a time).
_HASH_BATCH = 16


# A batch of bytes goes to a hashing thread at this size even with fewer files: what is held
# while queued stays a few megabytes a thread, whatever the sources' sizes.
_BATCH_BYTES = 4 << 20


def _hash_data(batch: Sequence[tuple[str, bytes]]) -> list[tuple[str, ImageHash | None]]:
    return [(sha256, _hash_of(data)) for sha256, data in batch]


class SourceHasher:
    """Near-duplicate hashes (sha256 -> hash) of the bytes ingest has just read, taken in
    `threads` threads while ingest reads on: a first run reads each source once, and its
    hashing (most of the time before the first output) overlaps the reading.

    The decodes and OpenCV release the GIL, so the threads hash on other cores. With one
    thread, the caller hashes (a run of --workers 1 keeps to one core). `finish` (or
    `close`) ends the threads: the worker pool is forked only after that.
    """

    def __init__(self, threads: int) -> None:
        self._hashes: dict[str, ImageHash] = {}
        self._threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self._threads) if self._threads > 1 else None
        self._batch: list[tuple[str, bytes]] = []
        self._size = 0
        self._seen: set[str] = set()  # equal bytes, one hash
        self._running: deque[Future[list[tuple[str, ImageHash | None]]]] = deque()

    def add(self, sha256: str, data: bytes) -> None:
        if sha256 in self._seen:
            return
        self._seen.add(sha256)
        self._batch.append((sha256, data))
        self._size += len(data)
        if len(self._batch) >= _HASH_BATCH or self._size >= _BATCH_BYTES:
            self._send()

    def _send(self) -> None:
        batch, self._batch, self._size = self._batch, [], 0
        if not batch:
            return
        if self._pool is None:
            self._keep(_hash_data(batch))
            return
        self._running.append(self._pool.submit(_hash_data, batch))
        # The bytes of a few batches a thread are held, not the dataset's.
        while len(self._running) > 2 * self._threads:
            self._keep(self._running.popleft().result())

    def _keep(self, hashed: Sequence[tuple[str, ImageHash | None]]) -> None:
        self._hashes.update((sha256, value) for sha256, value in hashed if value is not None)

    def finish(self) -> dict[str, ImageHash]:
        """Every hash, once the last batches are done; the threads have ended, and the
        hasher holds nothing more (it may be kept until the run ends)."""
        self._send()
        while self._running:
            self._keep(self._running.popleft().result())
        self.close()
        hashes, self._hashes = self._hashes, {}
        return hashes

    def close(self) -> None:
        """End the threads (what is queued is dropped): on an error, and after `finish`."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._running.clear()
        self._batch, self._seen = [], set()


def hash_originals(
    root: Path,
    originals: Sequence[Original],
    known: Mapping[str, ImageHash],
    threads: int = 1,
    phase: Phase | None = None,
) -> tuple[dict[str, ImageHash], int]:
    """Path -> hash for every readable original; `known` (sha256 -> hash) is reused.

    Pillow decodes without the GIL, so threads spread the decodes over cores (a draft
    decode of a 12-megapixel JPEG is ~20 ms, a sixth of the full decode the worker does).
    """
    hashes = {o.path: known[o.sha256] for o in originals if o.sha256 in known}
    todo = [o.path for o in originals if o.path not in hashes]
    threads = max(1, threads)
    advance = phase("hashing", len(todo)) if phase is not None and todo else None
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # A few hundred at a time: `map` makes a future (~1 KB) per item up front, which
        # would make memory grow with the dataset.
        step = 8 * _HASH_BATCH * threads
        for start in range(0, len(todo), step):
            paths = todo[start : start + step]
            batches = (
                [root / p for p in paths[i : i + _HASH_BATCH]]
                for i in range(0, len(paths), _HASH_BATCH)
            )
            hashed = itertools.chain.from_iterable(pool.map(_hash_files, batches))
            for path, value in zip(paths, hashed, strict=True):
                if value is not None:
                    hashes[path] = value
            if advance is not None:
                advance(len(paths))
    return hashes, len(todo)


def group_duplicates(
    root: Path,
    originals: Sequence[Original],
    max_distance: int,
    known: Mapping[str, ImageHash] | None = None,
    previous_splits: Mapping[str, str] | None = None,
    threads: int = 1,
    found: Sequence[Sequence[str]] | None = None,
    phase: Phase | None = None,
) -> Grouping:
    """Merge the groups of duplicate originals. `max_distance` < 0 turns grouping off, and
    the hashing with it: it is a tenth of a first run's time.

    `found`: the clusters' paths, as an earlier grouping of these very originals and hashes
    found them (`Grouping.found`). Nothing is decoded or compared then: a rerun proven
    unchanged (augment/uptodate.py) would otherwise compare every pair of hashes again,
    which grows with the square of the dataset. ValueError if a path is not an original.
    """
    if max_distance < 0:
        return Grouping(list(originals), {}, [], [], 0)
    previous_splits = previous_splits or {}
    if found is None:
        hashes, computed = hash_originals(root, originals, known or {}, threads, phase)
        clusters = _similar(originals, hashes, max_distance)
    else:
        known = known or {}
        hashes, computed = {o.path: known[o.sha256] for o in originals if o.sha256 in known}, 0
        index = {o.path: i for i, o in enumerate(originals)}
        try:
            clusters = [sorted(index[path] for path in paths) for paths in found]
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]!r} is not an original") from None

    # Merge whole groups: a cluster joins the groups of its members, and groups chain.
    group_ids = {g: n for n, g in enumerate(sorted({o.group for o in originals}))}
    groups = _UnionFind(len(group_ids))
    for members in clusters:
        for i in members[1:]:
            groups.union(group_ids[originals[members[0]].group], group_ids[originals[i].group])
    keys = sorted(group_ids)  # the union keeps the smallest index: the merged key is the min

    # A merged group whose members an earlier run split apart stays as it was (sticky).
    earlier: dict[int, set[str]] = {}
    for o in originals:
        if o.path in previous_splits:
            earlier.setdefault(groups.find(group_ids[o.group]), set()).add(previous_splits[o.path])
    conflicted = {root_id for root_id, seen in earlier.items() if len(seen) > 1}

    result: list[Original] = []
    for o in originals:
        root_id = groups.find(group_ids[o.group])
        keep = root_id in conflicted or keys[root_id] == o.group
        result.append(o if keep else dataclasses.replace(o, group=keys[root_id]))

    kept: list[Cluster] = []
    conflicts: list[Cluster] = []
    for members in clusters:
        paths = tuple(sorted(originals[i].path for i in members))
        labels = tuple(sorted({originals[i].label for i in members}))
        if groups.find(group_ids[originals[members[0]].group]) in conflicted:
            placed = {p: previous_splits[p] for p in paths if p in previous_splits}
            conflicts.append(Cluster(paths, labels, placed))
        else:
            kept.append(Cluster(paths, labels))
    return Grouping(
        result,
        hashes,
        sorted(kept, key=lambda c: c.paths),
        sorted(conflicts, key=lambda c: c.paths),
        computed,
    )


def _similar(
    originals: Sequence[Original], hashes: Mapping[str, ImageHash], max_distance: int
) -> list[list[int]]:
    """Clusters of originals (indices, each sorted): equal bytes always; otherwise stars, each
    an original and the others within the threshold of it (`pair_max_distance`), the mirror
    included. The clusters do not depend on the originals' order: they are found by path."""
    # One node per distinct content: byte-identical copies are one picture, always together.
    nodes: list[list[int]] = []
    node_of: dict[str, int] = {}
    for i in sorted(range(len(originals)), key=lambda i: originals[i].path):
        n = node_of.setdefault(originals[i].sha256, len(nodes))
        if n == len(nodes):
            nodes.append([])
        nodes[n].append(i)
    del node_of
    near = near_graph(originals, hashes, nodes, max_distance)
    stars = [[n] for n in range(len(nodes))]
    for centre, members in star_clusters(near):
        stars[centre] = [centre, *members]
        for m in members:
            stars[m] = []
    # The graph was the run's largest transient (dozens of pairs per look-alike): its
    # pages go back to the system before the workers are forked.
    del near
    return_free_heap()
    clusters = [sorted(i for n in star for i in nodes[n]) for star in stars]
    return [c for c in clusters if len(c) > 1]
