"""`--balance`: give minority classes more variants so every class ends train equal.

The largest class (most train originals) gets exactly what `--times N` gives it: N images
per original. Every other class gets the same total, T = N x (largest class's originals),
spread over its originals as evenly as possible: each gets T // n images and the first
T % n of them, in an order that follows a hash of (seed, original's sha256), get one more.
Each original's images are its preprocessed original (unless --no-originals) and variants.

`--balance instances` (annotated sets) balances objects, not images. The target T is the
object count of the most common class under plain `--times N` (N x its objects in the train
originals). Every original with objects starts at one image, every negative (no objects) at
N, as plain. Then, one image at a time, the original whose objects are most wanted gets one
more: each object of class c scores (T - total_c) / T, positive while c is short of T and
negative once it is past it, so an image whose rare object sits beside common ones scores
less, and not at all once the common ones outweigh it (co-occurring common classes are not
inflated). It stops when no original scores above 0; no original gets more than
MAX_REPEAT x N images. Ties go to the hash order of (seed, sha256, path).

With a recipe's `mix:`, a mixed variant also holds its partners' objects (a mosaic's three
tiles, the instances copy-paste pastes, MixUp's partner, what falls in CutMix's box). They
are counted exactly as the plan draws them (partners.added_objects), in the totals, under
plain --times N and as planned, and shown apart as `mixed`: a variant the loop adds counts
what its mix brings. Objects the output's edges, a paste or a transform then drop are not
foreseen here; each output's record counts them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from augment.errors import DatasetError
from augment.model import Original

MAX_REPEAT = 3  # --balance instances: at most this many times N images per original
# The objects a variant (original, variant index) holds besides its own: its mix's partners'.
Added = Callable[[Original, int], Counter[str]]


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


def plan_balance(
    train: Mapping[str, Sequence[Original]],
    variants_per_class: Mapping[str, Sequence[int]],
    seed: int,
    mode: bool | str,
    added: Added | None = None,
) -> tuple[dict[str, tuple[int, ...]], dict[str, dict[str, int]]]:
    """The variants `--balance` (True) or `--balance instances` gives each train original,
    and, for instances, the objects per class: in the originals, under plain --times N, and
    as planned (with `added`, what mixes bring too)."""
    if mode == "instances":
        return instance_variants(train, variants_per_class, seed, added)
    return (balanced_variants(train, variants_per_class, seed) if mode else {}), {}


def instance_variants(
    train: Mapping[str, Sequence[Original]],
    variants_per_class: Mapping[str, Sequence[int]],
    seed: int,
    added: Added | None = None,
) -> tuple[dict[str, tuple[int, ...]], dict[str, dict[str, int]]]:
    """`--balance instances` (the rule in the module's doc)."""
    members = _order([o for group in train.values() for o in group], seed)
    if any(o.annotation is None for o in members):
        raise DatasetError(
            "--balance instances balances objects, which only an annotated set (YOLO, COCO, "
            "VOC, masks) has; for class folders use --balance"
        )
    plain = [variants_per_class[o.label] for o in members]
    objects = [Counter(obj.label for obj in o.annotation.objects) if o.annotation else Counter()
               for o in members]  # fmt: skip

    def brought(i: int, variant: int) -> Counter[str]:
        return added(members[i], variant) if added is not None and variant else Counter()

    times: Counter[str] = Counter()
    for i, (counts, variants) in enumerate(zip(objects, plain, strict=True)):
        times.update({c: n * len(variants) for c, n in counts.items()})
        for v in variants:
            times.update(brought(i, v))
    target = max(times.values(), default=0)
    firsts = [min(v, default=0) for v in plain]
    images = [
        1 if counts else len(variants) for counts, variants in zip(objects, plain, strict=True)
    ]
    totals: Counter[str] = Counter()
    mixed: Counter[str] = Counter()
    for i, (counts, k) in enumerate(zip(objects, images, strict=True)):
        totals.update({c: n * k for c, n in counts.items()})
        for v in range(firsts[i], firsts[i] + k):
            mixed.update(brought(i, v))
    while target:
        best, best_score = -1, 0.0
        for i, counts in enumerate(objects):
            if counts and images[i] < MAX_REPEAT * len(plain[i]):
                score = sum(n * (target - totals[c] - mixed[c]) / target for c, n in counts.items())
                if score > best_score:
                    best, best_score = i, score
        if best < 0:
            break
        mixed.update(brought(best, firsts[best] + images[best]))
        images[best] += 1
        totals.update(objects[best])
    out = {
        o.path: tuple(range(first, first + k))
        for o, first, k in zip(members, firsts, images, strict=True)
    }
    return out, _report(sum(objects, Counter()), times, totals + mixed, mixed, added is not None)


def _report(
    originals: Counter[str],
    times: Counter[str],
    planned: Counter[str],
    mixed: Counter[str],
    with_mixes: bool,
) -> dict[str, dict[str, int]]:
    report: dict[str, dict[str, int]] = {}
    for c in sorted(times | planned):
        report[c] = {"originals": originals[c], "times": times[c], "planned": planned[c]}
        if with_mixes:
            report[c]["mixed"] = mixed[c]
    return report
