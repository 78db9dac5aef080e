"""The near-pair graph holds every pair within its own threshold once, both ways and in
order, however many steps it is built in; and a dataset of look-alikes, dozens of near pairs
per original, builds it within a bound of memory per pair."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from augment.imaging.digests import ImageHash
from augment.imaging.hash_index import pair_arrays, pair_pieces
from augment.imaging.similarity import HASH_BITS, pair_max_distance
from augment.model import Original
from augment.stages import near_graph as near_graph_module
from augment.stages.near_graph import near_graph


def look_alikes(
    groups: int, per_group: int, flips: int, seed: int = 0
) -> tuple[list[Original], dict[str, ImageHash]]:
    """`groups` pictures, each with `per_group` variants up to `flips` bits from it (so
    within 2 * flips of one another), mirrors random; every fifth image is small (its
    threshold is tighter)."""
    rng = np.random.default_rng(seed)
    originals, hashes = [], {}
    for g in range(groups):
        base = int(rng.integers(0, 2**63))
        for v in range(per_group):
            value = base
            for bit in rng.choice(HASH_BITS, int(rng.integers(0, flips + 1)), replace=False):
                value ^= 1 << int(bit)
            i = g * per_group + v
            side = 16 if i % 5 == 0 else 60
            path = f"{i:07d}.jpg"
            originals.append(Original(path, "a", path, f"{i:064x}", "JPEG", 80, side))
            hashes[path] = ImageHash(value, int(rng.integers(0, 2**63)))
    return originals, hashes


def brute_force(
    originals: list[Original], hashes: dict[str, ImageHash], max_distance: int
) -> dict[tuple[int, int], int]:
    """(lower, higher) -> bits of every pair within its threshold, the mirror included."""
    direct = [hashes[o.path].direct for o in originals]
    mirror = [hashes[o.path].mirror for o in originals]
    pairs = {}
    for a in range(len(originals)):
        for b in range(a + 1, len(originals)):
            side = min(originals[a].height, originals[b].height, originals[a].width)
            bits = min(
                (direct[a] ^ direct[b]).bit_count(),
                (direct[a] ^ mirror[b]).bit_count(),
                (direct[b] ^ mirror[a]).bit_count(),
            )
            if bits <= pair_max_distance(max_distance, side):
                pairs[a, b] = bits
    return pairs


@pytest.mark.parametrize("step", [3, 1 << 16])
def test_graph_is_every_near_pair_once_both_ways(
    monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    monkeypatch.setattr(near_graph_module, "_KEYS_PER_STEP", step)
    originals, hashes = look_alikes(groups=12, per_group=15, flips=4)
    del hashes[originals[7].path]  # an unreadable original: no hash, no pairs
    nodes = [[i] for i in range(len(originals))]
    graph = near_graph(originals, hashes, nodes, 6)
    known = [o for o in originals if o.path in hashes]
    number = {o.path: i for i, o in enumerate(originals)}
    expected = {
        (number[known[a].path], number[known[b].path]): bits
        for (a, b), bits in brute_force(known, hashes, 6).items()
    }
    assert len(expected) > 300  # look-alikes: many pairs, some cut by the small threshold
    found = {}
    for n in range(len(originals)):
        around = graph.neighbours[graph.starts[n] : graph.starts[n + 1]].tolist()
        assert around == sorted(around) and n not in around
        for m, bits in zip(around, graph.bits[graph.starts[n] : graph.starts[n + 1]], strict=True):
            found[min(n, m), max(n, m)] = int(bits)
    assert found == expected
    assert len(graph.neighbours) == 2 * len(expected)  # each pair once in each direction


def test_the_search_keeps_only_the_pairs_asked_for() -> None:
    """A search of hashes against themselves finds each pair both ways; a caller that keeps
    one way holds half, and the same pairs as filtering afterwards."""
    _, hashes = look_alikes(groups=30, per_group=20, flips=3)
    values = np.array([h.direct for h in hashes.values()], np.uint64)
    a, b, bits = pair_arrays(values, values, 6, k=2)
    pieces = pair_pieces(values, values, 6, k=2, keep=lambda i, j, _: i < j)
    kept = {(int(i), int(j), int(d)) for p in pieces for i, j, d in zip(*p, strict=True)}
    assert kept == {(int(i), int(j), int(d)) for i, j, d in zip(a, b, bits, strict=True) if i < j}
    assert sum(len(p[0]) for p in pieces) == len(kept)


@pytest.mark.slow
def test_look_alikes_graph_within_a_bound_per_pair() -> None:
    """40 near pairs per original, as crops of a few photos have: building the graph holds
    ~25 bytes a pair at its peak (the graph itself keeps 10). Holding every pair several
    times over (both ways as int64 keys, whole-array temporaries) took ~50: 40 MB here,
    over the bound of 30."""
    originals, hashes = look_alikes(groups=250, per_group=81, flips=2)
    nodes = [[i] for i in range(len(originals))]
    tracemalloc.start()
    try:
        graph = near_graph(originals, hashes, nodes, 6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pairs = len(graph.neighbours) // 2
    assert pairs > 35 * len(originals)
    assert peak < 24 * pairs + 200 * len(originals) + (8 << 20)
