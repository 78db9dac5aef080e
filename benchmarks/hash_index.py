"""Near-duplicate search time: the multi-index hash index against the all-pairs search.

    python benchmarks/hash_index.py [--sizes 10000 100000 1000000] [--repeats 3]
                                    [--all-pairs-limit 60]

The workload of `expand`'s grouping (augment/stages/duplicates.py) at the default threshold:
n hashes against themselves and against their mirrors' hashes. The hashes are uniform
random 64-bit values, with a near copy (0 to 6 bits flipped) of one in a hundred, so every
size has real pairs to find; real pHashes are less uniform than that, and a set with many
copies of one picture makes more candidates (the index then falls back on all-pairs).

The all-pairs search is timed in full when its estimate fits in `--all-pairs-limit`
seconds; beyond that it is timed on a slice of the rows and scaled up to all of them (its
time is proportional to the pairs it compares), and the table says so. Both searches give
the same pairs: checked wherever both ran in full. One core; medians of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from augment.defaults import DEFAULT_MAX_DISTANCE
from augment.imaging.hash_index import choose_k, near_pairs
from augment.imaging.similarity import HASH_BITS, hamming_pairs

Search = Callable[[np.ndarray, np.ndarray, int], list[tuple[int, int, int]]]


def hashes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    direct = rng.integers(0, 2**HASH_BITS, n, dtype=np.uint64)
    mirror = rng.integers(0, 2**HASH_BITS, n, dtype=np.uint64)
    copies = rng.choice(n, n // 100, replace=False)
    near = direct[rng.choice(n, len(copies), replace=False)]
    flips = rng.integers(0, DEFAULT_MAX_DISTANCE + 1, len(copies))  # at most that many bits
    for nth in range(DEFAULT_MAX_DISTANCE):
        bit = np.uint64(1) << rng.integers(0, HASH_BITS, len(copies)).astype(np.uint64)
        near = np.where(flips > nth, near ^ bit, near)
    direct[copies] = near
    return direct, mirror


def grouping_search(search: Search, direct: np.ndarray, mirror: np.ndarray) -> list:
    """What duplicates.py asks: every hash against every hash, and against every mirror."""
    return [search(direct, right, DEFAULT_MAX_DISTANCE) for right in (direct, mirror)]


def index(left: np.ndarray, right: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    return list(near_pairs(left, right, r))


def all_pairs(left: np.ndarray, right: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    return list(hamming_pairs(left, right, r))


def timed(run: Callable[[], list], repeats: int) -> tuple[float, list]:
    times, result = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(n: int, repeats: int, limit: float) -> dict[str, object]:
    direct, mirror = hashes(n, seed=n)
    index_s, found = timed(lambda: grouping_search(index, direct, mirror), repeats)
    row: dict[str, object] = {
        "hashes": n,
        "k": choose_k(n, n, DEFAULT_MAX_DISTANCE),
        "pairs": sum(len(f) for f in found),
        "index_s": round(index_s, 4),
    }
    # A small slice first: the all-pairs time is proportional to the rows compared.
    rows = max(1, min(n, 500_000_000 // n))  # ~10^9 pairs in the two searches
    probe, _ = timed(lambda: grouping_search(all_pairs, direct[:rows], mirror), 1)
    estimate = probe * n / rows
    if estimate <= limit:
        all_s, expected = timed(lambda: grouping_search(all_pairs, direct, mirror), repeats)
        row["same_pairs"] = expected == found
        row["all_pairs_s"] = round(all_s, 4)
        row["all_pairs"] = "measured"
    else:
        row["all_pairs_s"] = round(estimate, 1)
        row["all_pairs"] = f"scaled from {rows} of {n} rows"
    row["ratio"] = round(float(row["all_pairs_s"]) / index_s, 1)  # type: ignore[arg-type]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--all-pairs-limit", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    print(f"threshold {DEFAULT_MAX_DISTANCE} bits; median of {args.repeats}; one core")
    print("| hashes | k | pairs found | index s | all-pairs s | all-pairs | ratio | same |")
    print("|---:|---:|---:|---:|---:|---|---:|---|")
    for n in args.sizes:
        row = measure(n, args.repeats, args.all_pairs_limit)
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"| {n:,} | {row['k']} | {row['pairs']:,} | {row['index_s']} | "
            f"{row['all_pairs_s']} | {row['all_pairs']} | {row['ratio']}x | "
            f"{row.get('same_pairs', 'n/a')} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
