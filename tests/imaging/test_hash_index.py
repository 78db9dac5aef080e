"""The near-duplicate index finds exactly the pairs the all-pairs search finds, in its order,
for every threshold, on random hashes and on hashes crafted to sit on the threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from augment.imaging.hash_index import _joined, _search, block_masks, choose_k, near_pairs
from augment.imaging.similarity import HASH_BITS, hamming_pairs

hash_values = st.integers(min_value=0, max_value=2**HASH_BITS - 1)
thresholds = st.integers(min_value=0, max_value=HASH_BITS)


def as_array(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def flipped(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


@st.composite
def crafted(draw: st.DrawFn) -> list[int]:
    """A few pictures and copies of each a drawn number of bits away (0 to 64), so that
    pairs fall on, just inside and just outside any threshold."""
    bases = draw(st.lists(hash_values, min_size=1, max_size=6))
    values = list(bases)
    for base in bases:
        for _ in range(draw(st.integers(0, 4))):
            bits = draw(st.lists(st.integers(0, HASH_BITS - 1), unique=True, max_size=HASH_BITS))
            values.append(flipped(base, bits))
    return draw(st.permutations(values))


def ks(max_distance: int) -> list[int | None]:
    """The automatic choice and every number of equal blocks the threshold allows."""
    return [
        None,
        *(
            k
            for k in (1, 2, 3, 4)
            if max_distance + k <= HASH_BITS and math.comb(max_distance + k, k) <= 1000
        ),
    ]


def assert_same_pairs(left: list[int], right: list[int], max_distance: int) -> None:
    expected = list(hamming_pairs(as_array(left), as_array(right), max_distance))
    for k in ks(max_distance):
        assert list(near_pairs(as_array(left), as_array(right), max_distance, k=k)) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(hash_values, max_size=40), st.lists(hash_values, max_size=40), thresholds)
def test_random_hashes_give_the_all_pairs_result(
    left: list[int], right: list[int], max_distance: int
) -> None:
    assert_same_pairs(left, right, max_distance)


@settings(max_examples=60, deadline=None)
@given(crafted(), crafted(), thresholds)
def test_crafted_near_copies_give_the_all_pairs_result(
    left: list[int], right: list[int], max_distance: int
) -> None:
    assert_same_pairs(left, right, max_distance)


@settings(max_examples=40, deadline=None)
@given(crafted(), thresholds)
def test_one_set_against_itself_gives_the_all_pairs_result(
    values: list[int], max_distance: int
) -> None:
    hashes = as_array(values)
    expected = list(hamming_pairs(hashes, hashes, max_distance))
    for k in ks(max_distance):
        assert list(near_pairs(hashes, hashes, max_distance, k=k)) == expected


@pytest.mark.parametrize("max_distance", range(HASH_BITS + 1))
def test_every_threshold_on_copies_at_every_distance(max_distance: int) -> None:
    """Copies of one hash at 0..64 bits, the flipped bits spread over every block: each
    threshold keeps exactly the copies within it, through the index itself (k forced)."""
    rng = np.random.default_rng(max_distance)
    base = int(rng.integers(0, 2**63)) * 2 + 1
    copies = [
        flipped(base, [int(b) for b in rng.permutation(HASH_BITS)[:d]])
        for d in range(HASH_BITS + 1)
    ]
    right = [*copies, *(int(v) for v in rng.integers(0, 2**63, 50))]
    for k in ks(max_distance):
        found = list(near_pairs(as_array([base]), as_array(right), max_distance, k=k))
        assert [j for _, j, _ in found if j <= HASH_BITS] == list(range(max_distance + 1))
    assert_same_pairs([base], right, max_distance)
    if max_distance < HASH_BITS:  # the tables themselves, where the search would give up
        pieces = _search(as_array([base]), as_array(right), max_distance, 1, give_up=False)
        assert pieces is not None
        pairs = _joined(pieces)
        expected = list(hamming_pairs(as_array([base]), as_array(right), max_distance))
        assert sorted(zip(*(p.tolist() for p in pairs), strict=True)) == expected


@pytest.mark.slow
def test_many_copies_of_one_picture_fall_back_and_stay_exact() -> None:
    """A thousand equal hashes make a million candidates in every table: the search gives up
    on the index (comparing every pair is cheaper) and the result is still exact."""
    hashes = as_array([0x0123_4567_89AB_CDEF] * 1000 + [0xFEDC_BA98_7654_3210])
    assert _search(hashes, hashes, 6, 2) is None
    found = list(near_pairs(hashes, hashes, 6, k=2))
    assert len(found) == 1000 * 1000 + 1
    assert found == list(hamming_pairs(hashes, hashes, 6))


def test_blocks_cover_every_bit_once() -> None:
    for max_distance in range(HASH_BITS):
        blocks = block_masks(max_distance, 1)
        assert len(blocks) == max_distance + 1
        assert sum(blocks) == 2**HASH_BITS - 1
        assert all(a & b == 0 for a in blocks for b in blocks if a is not b)
    with pytest.raises(ValueError):
        block_masks(HASH_BITS, 1)


def test_large_sets_use_the_index_and_small_ones_compare_every_pair() -> None:
    assert choose_k(100, 100, 6) is None or choose_k(100, 100, 6) == 1
    assert choose_k(100_000, 100_000, 6) is not None
    assert choose_k(100_000, 100_000, HASH_BITS) is None
