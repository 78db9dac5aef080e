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

With a CopyPaste entry, the balancing also chooses what is pasted: each variant it plans (in
the order above: the first images, then one at a time) draws its paste steered to the classes
images cannot bring up (stages/partners.py). Class c is wanted by (need_c / T)^2, need_c =
T - total_c - supply_c, where supply_c is what the images the loop may still add (up to
MAX_REPEAT x N per original) could bring of c: a common class, whose images are many, is not
pasted, and a rare one, whose few images cannot reach T, is pasted the more the further it
lags. Plain --times N's counts keep the uniform draw; the report shows the pasted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from augment.errors import DatasetError
from augment.imaging.digests import sha256_of
from augment.model import Original

MAX_REPEAT = 3  # --balance instances: at most this many times N images per original


class Brought(NamedTuple):
    """The objects a mixed variant holds besides its own (its partners'), and whether they
    are copy-paste's pasted instances."""

    objects: Counter[str]
    pasted: bool = False


# A variant's (original, variant index, wanted classes or None for the plain draw) mix:
# what it brings. With `wanted` (class -> how much it needs pasted objects, > 0), a CopyPaste
# draw is steered to those classes (stages/partners.py), and that draw is the plan's.
Added = Callable[[Original, int, Mapping[str, float] | None], Brought]


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
        return sha256_of("balance", seed, o.sha256, o.path)

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
    times, times_pasted = _times_n(members, plain, objects, added)
    target = max(times.values(), default=0)
    tally = _Tally(target, Counter(), Counter(), Counter(), times)
    firsts = [min(v, default=0) for v in plain]
    images = [
        1 if counts else len(variants) for counts, variants in zip(objects, plain, strict=True)
    ]
    for counts, k, variants in zip(objects, images, plain, strict=True):
        tally.totals.update({c: n * k for c, n in counts.items()})
        tally.supply.update({c: n * (MAX_REPEAT * len(variants) - k) for c, n in counts.items()})
    for i, k in enumerate(images):  # what the first images' mixes bring, drawn in order
        for v in range(firsts[i], firsts[i] + k):
            tally.bring(added, members[i], v)
    while target:
        best, best_score = -1, 0.0
        for i, counts in enumerate(objects):
            if counts and images[i] < MAX_REPEAT * len(plain[i]):
                score = sum(n * (target - tally.count(c)) / target for c, n in counts.items())
                if score > best_score:
                    best, best_score = i, score
        if best < 0:
            break
        tally.bring(added, members[best], firsts[best] + images[best])
        images[best] += 1
        tally.totals.update(objects[best])
        tally.supply.subtract(objects[best])
    out = {
        o.path: tuple(range(first, first + k))
        for o, first, k in zip(members, firsts, images, strict=True)
    }
    report = _report(sum(objects, Counter()), times, tally, added is not None)
    if times_pasted or tally.pasted:  # a CopyPaste entry: what it pastes, per class
        for c, n in report.items():
            n["pasted"] = tally.pasted[c]
    return out, report


def _times_n(
    members: Sequence[Original],
    plain: Sequence[Sequence[int]],
    objects: Sequence[Counter[str]],
    added: Added | None,
) -> tuple[Counter[str], Counter[str]]:
    """The objects per class under plain --times N, mixes drawn as they are without
    balancing; and of those, the pasted ones."""
    times: Counter[str] = Counter()
    pasted: Counter[str] = Counter()
    for original, counts, variants in zip(members, objects, plain, strict=True):
        times.update({c: n * len(variants) for c, n in counts.items()})
        for v in variants:
            if added is not None and v:
                brought = added(original, v, None)
                times.update(brought.objects)
                pasted.update(brought.objects if brought.pasted else {})
    return times, pasted


@dataclass
class _Tally:
    """The objects per class planned so far: the images' own, and what their mixes bring."""

    target: int
    totals: Counter[str]
    mixed: Counter[str]
    pasted: Counter[str]
    classes: Counter[str]  # every class the set or its mixes hold (the plain counts)
    # What the images each original may still get (up to MAX_REPEAT x N) would bring.
    supply: Counter[str] = field(default_factory=Counter)

    def count(self, label: str) -> int:
        return self.totals[label] + self.mixed[label]

    def wanted(self) -> dict[str, float]:
        """Each class's need of pasted objects: what it lacks of the target beyond what the
        images the loop may still add could bring of it (`supply`), as a share of the target,
        squared so that the class furthest behind is preferred more than in proportion."""
        need = {c: self.target - self.count(c) - self.supply[c] for c in sorted(self.classes)}
        return {c: (n / self.target) ** 2 for c, n in need.items() if n > 0}

    def bring(self, added: Added | None, original: Original, variant: int) -> None:
        if added is None or not variant:  # variant 0 is the original itself, never mixed
            return
        brought = added(original, variant, self.wanted() if self.target else None)
        self.mixed.update(brought.objects)
        if brought.pasted:
            self.pasted.update(brought.objects)


def _report(
    originals: Counter[str],
    times: Counter[str],
    tally: _Tally,
    with_mixes: bool,
) -> dict[str, dict[str, int]]:
    planned = tally.totals + tally.mixed
    report: dict[str, dict[str, int]] = {}
    for c in sorted(times | planned):
        report[c] = {"originals": originals[c], "times": times[c], "planned": planned[c]}
        if with_mixes:
            report[c]["mixed"] = tally.mixed[c]
    return report
