"""Near-duplicate search that scales: multi-index hashing over 64-bit perceptual hashes.

`similarity.hamming_pairs` compares every pair, n x m of them, which grows with the square of
the dataset (docs/scale.md has the figures). This module finds the same pairs, in the same
order, from far fewer comparisons.

The pigeonhole principle: cut the 64 bits into `max_distance + k` blocks. Two hashes at most
`max_distance` bits apart differ in at most that many blocks, so at least `k` blocks are equal
in both. One *table* per choice of `k` blocks: a hash's key in it is the hash with the other
blocks' bits cleared. A pair within the threshold has equal keys in at least one table; the
pairs with equal keys in a table are its *candidates*, and each candidate's Hamming distance
is then checked. A pair is reported from the first table where its keys are equal only, so
once.

`k` trades tables (C(max_distance + k, k), each a sort of the hashes) against candidates (two
unrelated hashes share a key of b bits with probability 2^-b). The cheapest `k` is chosen
from a cost estimate; when comparing every pair is cheaper (a few thousand hashes, or a
threshold near 64 bits), that is done instead. Hashes that are far from uniform (thousands of
copies of one picture) make more candidates than the estimate: the search falls back to
comparing every pair as soon as its candidates would cost more than that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from itertools import combinations, pairwise

import numpy as np

from augment.imaging.similarity import HASH_BITS, hamming_pairs

# Relative costs, in nanoseconds on one core (see benchmarks/hash_index.py): one hash sorted
# and looked up in one table, one candidate pair checked, one pair of the all-pairs search.
_COST_PER_HASH_AND_TABLE = 30.0
_COST_PER_CANDIDATE = 10.0
_COST_PER_PAIR = 1.6
_MAX_K = 8
_MAX_TABLES = 1000
# Candidate pairs expanded at a time: ~40 bytes each, so ~3 MB however many there are
# (steps of 2**20 took 50 MB, and were slower: benchmarks/hash_index.py).
_CANDIDATES_PER_STEP = 1 << 16

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # left index, right index, distance
Keep = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # pairs -> mask of those kept


def block_masks(max_distance: int, k: int) -> list[int]:
    """One mask per table: the bits of `k` of the `max_distance + k` blocks of the hash."""
    blocks = max_distance + k
    if k < 1 or blocks > HASH_BITS:
        raise ValueError(f"cannot cut {HASH_BITS} bits into {blocks} blocks")
    bounds = [round(i * HASH_BITS / blocks) for i in range(blocks + 1)]
    masks = [((1 << (end - start)) - 1) << (HASH_BITS - end) for start, end in pairwise(bounds)]
    return [sum(chosen) for chosen in combinations(masks, k)]


def _estimated_cost(n_left: int, n_right: int, max_distance: int, k: int) -> float:
    tables = math.comb(max_distance + k, k)
    key_bits = HASH_BITS * k / (max_distance + k)
    candidates = n_left * n_right * tables * 2.0**-key_bits
    return tables * (n_left + n_right) * _COST_PER_HASH_AND_TABLE + (
        candidates * _COST_PER_CANDIDATE
    )


def choose_k(n_left: int, n_right: int, max_distance: int) -> int | None:
    """The number of equal blocks to look for, or None when comparing every pair is cheaper."""
    all_pairs = n_left * n_right * _COST_PER_PAIR
    best: tuple[float, int] | None = None
    for k in range(1, _MAX_K + 1):
        if max_distance + k > HASH_BITS or math.comb(max_distance + k, k) > _MAX_TABLES:
            break
        cost = _estimated_cost(n_left, n_right, max_distance, k)
        if best is None or cost < best[0]:
            best = (cost, k)
    if best is None or best[0] >= all_pairs:
        return None
    return best[1]


def near_pairs(
    left: np.ndarray, right: np.ndarray, max_distance: int, k: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) for every left[i], right[j] at most `max_distance` bits apart, in
    (i, j) order: what `similarity.hamming_pairs` yields, from far fewer comparisons.

    `left` and `right` are uint64 arrays. `k` forces the number of equal blocks looked for
    (tests use it to run the index where the estimate would compare every pair).
    """
    i, j, distance = pair_arrays(left, right, max_distance, k)
    order = np.lexsort((j, i))
    for a, b, bits in zip(i[order], j[order], distance[order], strict=True):
        yield int(a), int(b), int(bits)


def pair_arrays(
    left: np.ndarray,
    right: np.ndarray,
    max_distance: int,
    k: int | None = None,
    keep: Keep | None = None,
) -> Pairs:
    """The pairs `near_pairs` yields as three arrays (left index, right index, distance), in
    no order: a dataset of look-alikes has dozens of near pairs per image, and a pair held
    in arrays costs 9 bytes, where Python's tuples and ints cost ~100. With `keep`, only the
    pairs it keeps (see `pair_pieces`)."""
    return _joined(pair_pieces(left, right, max_distance, k, keep))


def pair_pieces(
    left: np.ndarray,
    right: np.ndarray,
    max_distance: int,
    k: int | None = None,
    keep: Keep | None = None,
) -> list[Pairs]:
    """The pairs of `pair_arrays` in pieces, not joined: a caller that turns each piece into
    something else need not hold them twice. `keep` (i, j, distance -> a mask) drops pairs
    as the search finds them, so what is held is only what is kept: a search of a set
    against itself finds each pair both ways, and a caller wanting one of them holds half."""
    same = left is right
    left = np.ascontiguousarray(left, dtype=np.uint64)
    right = left if same else np.ascontiguousarray(right, dtype=np.uint64)
    if max_distance < 0 or not len(left) or not len(right):
        return []
    if k is None:
        k = choose_k(len(left), len(right), max_distance)
    found = None if k is None else _search(left, right, max_distance, k, keep=keep)
    if found is None:
        found = [_kept(_from_tuples(hamming_pairs(left, right, max_distance)), keep)]
    return found


def _kept(pairs: Pairs, keep: Keep | None) -> Pairs:
    if keep is None:
        return pairs
    mask = keep(*pairs)
    return pairs[0][mask], pairs[1][mask], pairs[2][mask]


def _joined(pieces: list[Pairs]) -> Pairs:
    if not pieces:
        return _no_pairs()
    if len(pieces) == 1:
        return pieces[0]
    return (
        np.concatenate([p[0] for p in pieces]),
        np.concatenate([p[1] for p in pieces]),
        np.concatenate([p[2] for p in pieces]),
    )


def _no_pairs() -> Pairs:
    return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.uint8)


def _from_tuples(pairs: Iterator[tuple[int, int, int]]) -> Pairs:
    flat = np.fromiter(itertools.chain.from_iterable(pairs), np.int64).reshape(-1, 3)
    return _compact(flat[:, 0], flat[:, 1], flat[:, 2])


def _compact(i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> Pairs:
    """Indices as int32 (a dataset has fewer than 2**31 images), distances as uint8."""
    return i.astype(np.int32), j.astype(np.int32), distance.astype(np.uint8)


def _search(
    left: np.ndarray,
    right: np.ndarray,
    max_distance: int,
    k: int,
    give_up: bool = True,
    keep: Keep | None = None,
) -> list[Pairs] | None:
    """The pairs within the threshold (those `keep` keeps), table by table, in pieces; None
    once the candidates would cost more than comparing every pair (the caller does that
    instead), unless not `give_up`."""
    masks = [np.uint64(m) for m in block_masks(max_distance, k)]
    budget = len(left) * len(right) * _COST_PER_PAIR / _COST_PER_CANDIDATE if give_up else math.inf
    spent = 0
    found: list[Pairs] = []
    for t, mask in enumerate(masks):
        order, keys = _sorted_keys(right, mask)
        # Sorted queries: a lookup of sorted keys is ~10x faster than one of shuffled keys.
        left_order, wanted = (order, keys) if left is right else _sorted_keys(left, mask)
        low = np.searchsorted(keys, wanted, "left")
        counts = np.searchsorted(keys, wanted, "right") - low
        spent += int(counts.sum())
        if spent > budget:
            return None
        rows = np.flatnonzero(counts)
        for step in _steps(counts[rows]):
            at = rows[step]
            i, j = _expand(left_order[at], low[at], counts[at], order)
            x = left[i] ^ right[j]
            distance = np.bitwise_count(x)
            near = distance <= max_distance
            i, j, x, distance = i[near], j[near], x[near], distance[near]
            # Reported by the first table where the keys are equal: once.
            first = np.ones(len(x), dtype=bool)
            for earlier in masks[:t]:
                first &= (x & earlier) != 0
            piece = _kept(_compact(i[first], j[first], distance[first]), keep)
            if len(piece[0]):
                found.append(piece)
    return found


def _sorted_keys(hashes: np.ndarray, mask: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts the hashes' keys in a table, and the sorted keys."""
    keys = hashes & mask
    order = np.argsort(keys)
    return order, keys[order]


def _steps(counts: np.ndarray) -> Iterator[slice]:
    """Slices of rows whose candidates add up to about `_CANDIDATES_PER_STEP` (a row with
    more is a step of its own)."""
    ends = np.cumsum(counts)
    start = 0
    while start < len(counts):
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + _CANDIDATES_PER_STEP, "right"))
        stop = max(stop, start + 1)
        yield slice(start, stop)
        start = stop


def _expand(
    rows: np.ndarray, low: np.ndarray, counts: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every (left row, right index) pair: row r with order[low[r] : low[r] + counts[r]]."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(low, counts) + (np.arange(total) - starts)
    return np.repeat(rows, counts).astype(np.int64), order[positions].astype(np.int64)
