"""The near pairs among the originals' perceptual hashes as a graph held in arrays, and the
star clusters found in it (augment/stages/duplicates.py keeps each cluster in one split).

A dataset of look-alikes (digits, video frames, crops of a few photos) has dozens of near
pairs per original, and their number grows faster than the dataset: they are what a first
run's memory grows with. So the pairs are kept only as the search finds them (each once,
by its own threshold), turned into keys piece by piece, and the graph is built from the
keys in place, a step at a time: no stage holds several copies of every pair.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from augment.imaging.digests import ImageHash
from augment.model import Original
from augment.rerun.heap import return_free_heap

if TYPE_CHECKING:
    import numpy as np

    from augment.imaging.hash_index import Pairs


@dataclass
class NearGraph:
    """Near pairs of nodes, both ways, as arrays (compressed rows): node n's neighbours are
    `neighbours[starts[n]:starts[n + 1]]`, ascending, at `bits[...]`. Look-alikes (digits,
    video frames) have dozens of near pairs each: held as dicts they cost ~200 bytes a pair,
    here 5 bytes a direction."""

    starts: np.ndarray
    neighbours: np.ndarray
    bits: np.ndarray


# Pair keys turned at a time into what is kept of them: the temporaries of a step stay a few
# megabytes, where whole-array expressions held several copies of every pair at once.
_KEYS_PER_STEP = 1 << 16


def near_graph(
    originals: Sequence[Original],
    hashes: Mapping[str, ImageHash],
    nodes: Sequence[Sequence[int]],
    max_distance: int,
) -> NearGraph:
    # numpy and OpenCV are imported only to find clusters: a rerun proven unchanged is
    # given them and should start without loading either (see augment/defaults.py).
    import numpy as np

    from augment.imaging.hash_index import pair_pieces
    from augment.imaging.similarity import pair_max_distance

    firsts = [originals[members[0]] for members in nodes]
    hashed = np.array([n for n, o in enumerate(firsts) if o.path in hashes], np.int32)
    direct = np.array([hashes[firsts[n].path].direct for n in hashed], np.uint64)
    mirror = np.array([hashes[firsts[n].path].mirror for n in hashed], np.uint64)
    # A pair's threshold is its smaller image's: a smaller side never has a wider one.
    side = np.array([min(firsts[n].width, firsts[n].height) for n in hashed], np.int64)
    sides, at = np.unique(side, return_inverse=True)
    limit = np.array([pair_max_distance(max_distance, int(s)) for s in sides], np.uint8)[at]
    del firsts, side, at
    size = len(nodes)
    # Candidates for the widest threshold, each pair's own checked as they are found (so
    # only the pairs kept are held), each pair once: the direct search finds both orders.
    pieces = pair_pieces(direct, direct, max_distance, keep=_within(limit, mirrored=False))
    pieces += pair_pieces(direct, mirror, max_distance, keep=_within(limit, mirrored=True))
    del direct, mirror, limit
    key = _pair_keys_of(pieces, hashed, size)
    return_free_heap()  # the pieces' pages, before the graph's arrays are made
    key.sort()
    key = key[_first_of_each_pair(key)]  # each pair's smallest bits, either pass
    return _both_ways(key, size)


def _both_ways(key: np.ndarray, size: int) -> NearGraph:
    """The graph of sorted pair keys (lower node, higher node, bits), each pair once. Node n's
    neighbours are its lower ones (the pairs whose higher node it is: in key order, so
    ascending), then its higher ones (the run of keys from (n * size) << 7: ascending too).
    Filled a step at a time straight into the graph's arrays: no copy of every pair is made
    both ways (that took 16 bytes a pair more at the peak)."""
    import numpy as np

    count = len(key)
    firsts = np.searchsorted(key, (np.arange(size + 1, dtype=np.int64) * size) << 7)
    higher = np.diff(firsts)
    lower = np.zeros(size, np.int64)
    for start in range(0, count, _KEYS_PER_STEP):
        lower += np.bincount((key[start : start + _KEYS_PER_STEP] >> 7) % size, minlength=size)
    starts = np.zeros(size + 1, np.int64)
    np.cumsum(lower + higher, out=starts[1:])
    neighbours = np.empty(2 * count, np.int32)
    distances = np.empty(2 * count, np.uint8)
    filled = starts[:-1].copy()  # each node's next slot for a lower neighbour
    for start in range(0, count, _KEYS_PER_STEP):
        part = key[start : start + _KEYS_PER_STEP]
        pair, bits = part >> 7, (part & 127).astype(np.uint8)
        low, high = pair // size, pair % size
        at = starts[low] + lower[low] + np.arange(start, start + len(part)) - firsts[low]
        neighbours[at], distances[at] = high, bits
        # A stable order keeps each node's lower neighbours in key order.
        order = np.argsort(high, kind="stable")
        sorted_high = high[order]
        at = filled[sorted_high] + np.arange(len(part)) - np.searchsorted(sorted_high, sorted_high)
        neighbours[at], distances[at] = low[order], bits[order]
        filled += np.bincount(high, minlength=size)
    return NearGraph(starts, neighbours, distances)


def _within(limit: np.ndarray, mirrored: bool) -> Callable[..., np.ndarray]:
    """Which pairs (a, b, bits) of a search of the hashes against themselves (or against
    their mirrors) are near by the pair's own threshold, each once."""
    import numpy as np

    def keep(a: np.ndarray, b: np.ndarray, bits: np.ndarray) -> np.ndarray:
        once = a != b if mirrored else a < b
        return once & (bits <= np.minimum(limit[a], limit[b]))

    return keep


def _pair_keys_of(pieces: list[Pairs], hashed: np.ndarray, size: int) -> np.ndarray:
    """The pieces' pairs as keys of (lower node, higher node, bits), in no order; each piece
    is let go once turned (the pieces and the keys are not held whole together)."""
    import numpy as np

    key = np.empty(sum(len(piece[0]) for piece in pieces), np.int64)
    at = 0
    while pieces:
        a, b, bits = pieces.pop()
        a, b = hashed[a], hashed[b]
        key[at : at + len(a)] = _pair_keys(np.minimum(a, b), np.maximum(a, b), bits, size)
        at += len(a)
    return key


def _first_of_each_pair(key: np.ndarray) -> np.ndarray:
    """Of sorted keys, which are the first (smallest bits) of their pair of nodes."""
    import numpy as np

    first = np.ones(len(key), bool)
    for start in range(1, len(key), _KEYS_PER_STEP):
        stop = min(start + _KEYS_PER_STEP, len(key))
        first[start:stop] = (key[start:stop] >> 7) != (key[start - 1 : stop - 1] >> 7)
    return first


def _pair_keys(node: np.ndarray, other: np.ndarray, bits: np.ndarray, size: int) -> np.ndarray:
    """One int64 a pair, in the order of (node, other, bits): 7 bits hold 0-64."""
    import numpy as np

    wide = node.astype(np.int64)
    return ((wide * size + other) << 7) | bits.astype(np.int64)


_WEIGHT_BITS = 8  # a neighbour at 0 bits weighs 8, at 6 bits 2
_RANK_SHIFT = 32  # a node's number and its count of neighbours are below 2**31
_NODE_MASK = (1 << _RANK_SHIFT) - 1


def star_clusters(near: NearGraph) -> list[tuple[int, list[int]]]:
    """Star clusters of a graph of near pairs: the node with the most (and closest)
    neighbours not yet taken takes them all, and again. No member joins through another
    member, so look-alikes do not chain: every member is within the threshold of its
    centre. Nodes are numbered in path order."""
    import numpy as np

    left = np.diff(near.starts) > 0

    def rank(n: int) -> int:
        """(-weight, free neighbours, n), ordered as that tuple, as one int: a tuple of
        three ints a node held in the heap cost ~150 bytes, an int ~40."""
        start, stop = near.starts[n], near.starts[n + 1]
        free = left[near.neighbours[start:stop]]
        # Closer neighbours weigh more: copies of a picture sit within a few bits of it,
        # look-alikes spread up to the threshold, so the original of copies is the centre.
        bits = near.bits[start:stop][free]
        count = len(bits)
        weight = _WEIGHT_BITS * count - int(np.minimum(bits, _WEIGHT_BITS - 1).sum())
        return (-weight << _RANK_SHIFT * 2) + (count << _RANK_SHIFT) + n

    heap = [rank(int(n)) for n in np.flatnonzero(left)]
    heapq.heapify(heap)
    stars: list[tuple[int, list[int]]] = []
    while heap:
        top = heapq.heappop(heap)
        centre = top & _NODE_MASK
        if not left[centre]:
            continue
        now = rank(centre)
        if now != top:  # neighbours were taken since: a rank only ever drops
            heapq.heappush(heap, now)
            continue
        left[centre] = False
        around = near.neighbours[near.starts[centre] : near.starts[centre + 1]]
        members = around[left[around]]
        left[members] = False
        if len(members):
            stars.append((centre, members.tolist()))
    return stars
