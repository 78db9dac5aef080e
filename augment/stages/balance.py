"""`--balance`: give minority classes more variants so every class ends train equal.

The largest class (most train originals) gets exactly what `--times N` gives it: N images
per original. Every other class gets the same total, T = N x (largest class's originals),
spread over its originals as evenly as possible: each gets T // n images and the first
T % n of them, in an order that follows a hash of (seed, original's sha256), get one more.
Each original's images are its preprocessed original (unless --no-originals) and variants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from augment.model import Original


def balanced_variants(
    train: Mapping[str, Sequence[Original]],
    variants_per_class: Mapping[str, Sequence[int]],
    seed: int,
) -> dict[str, tuple[int, ...]]:
    """Original path -> its variant indices, so that every class has the same train total.

    `variants_per_class` is the unbalanced plan (N images per original, starting at variant
    0, or 1 with --no-originals); the target is the largest class total it would give.
    """
    if not train:
        return {}
    target = max(len(members) * len(variants_per_class[c]) for c, members in train.items())
    out: dict[str, tuple[int, ...]] = {}
    for label, members in train.items():
        first = min(variants_per_class[label], default=0)
        for original, count in zip(
            _order(members, seed), spread(target, len(members)), strict=True
        ):
            out[original.path] = tuple(range(first, first + count))
    return out


def spread(total: int, parts: int) -> list[int]:
    """`total` split into `parts` counts that differ by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def _order(members: Sequence[Original], seed: int) -> list[Original]:
    def rank(o: Original) -> str:
        return hashlib.sha256(f"balance\x00{seed}\x00{o.sha256}\x00{o.path}".encode()).hexdigest()

    return sorted(members, key=rank)
