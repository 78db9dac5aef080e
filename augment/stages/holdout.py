"""Holding out validation/test originals before any augmentation.

The rule, per class (stratified):
- `--val F` / `--test F` with 0 <= F < 1 is a fraction of the class's originals, rounded to
  the nearest count; an integer >= 1 is a total count over the dataset, shared among classes
  in proportion to their size (largest remainder).
- A class with 3 or more originals gets at least one in each held-out split that was asked
  for; a class with fewer keeps all of them in train (too small to hold out; reported).
- Train always keeps at least one original of every class.
- Originals of one group (`--group-by`, the labels file's group column, or a duplicate
  cluster) move together; a group counts for the class most of its members have.
- With groups, each split of a class ends within `quota_tolerance` (5% of the class, at
  least 1) of its quota: a group goes to the first held-out split it fits in, else to train.
  A group too large for train as well goes where it overshoots least; when a class ends
  beyond the tolerance, `Holdout.quota_shifts` names the group and how far the class's
  splits moved. A group of more than a tenth of its class is listed in `large_groups`.
  Without groups (one original each) this is the plain rule: quotas are met exactly.
- Which groups are held out follows a hash of (seed, group key); the group key defaults to the
  path relative to SRC, so moving the dataset elsewhere does not reshuffle it.
- Sticky: an original that an earlier run placed keeps its split; new originals fill what the
  class's quotas still lack, so growing the dataset never moves an existing original. A
  rerun asking for another seed or other amounts stops (`check_same_holdout`) unless
  `--resplit`, which holds out afresh.
- A source already split (split folders, a labels file's split column) is not held out: its
  own split is the split (`uses_source_split`), unless `--resplit` pools it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from augment.defaults import default_workers
from augment.errors import DatasetError
from augment.imaging.digests import ImageHash, sha256_of
from augment.model import Dataset, ExpandOptions, LargeGroup, Original, Phase, QuotaShift
from augment.stages.duplicates import Grouping, group_duplicates
from augment.stages.multilabel import stratify

SPLITS = ("train", "validation", "test")
HELD_OUT = ("validation", "test")
MIN_CLASS_TO_HOLD_OUT = 3


@dataclass(frozen=True)
class Holdout:
    split_of: dict[str, str]  # original path -> split
    too_small: list[str]  # classes kept entirely in train
    large_groups: list[LargeGroup] = field(default_factory=list)  # > a tenth of their class
    quota_shifts: list[QuotaShift] = field(default_factory=list)  # beyond the tolerance


def parse_amount(text: str | float | int, option: str) -> float | int:
    """`0.1` is a fraction; `10` is a count. Anything else is a clear error."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DatasetError(
            f"{option} must be a fraction (0.1) or a count (10), not {text!r}"
        ) from None
    if not math.isfinite(value):  # inf, 1e400 (read as inf), nan
        raise DatasetError(f"{option} must be a finite fraction or count, got {text}")
    if value < 0:
        raise DatasetError(f"{option} must not be negative, got {text}")
    if value < 1:
        return value
    if value != int(value):
        raise DatasetError(f"{option} {text}: a value of 1 or more must be a whole count")
    return int(value)


def _rank(seed: int, group: str) -> str:
    return sha256_of(seed, group)


def _quotas(amount: float | int, sizes: Mapping[str, int]) -> dict[str, int]:
    if isinstance(amount, float):
        return {c: math.floor(amount * n + 0.5) for c, n in sizes.items()}
    total = sum(sizes.values())
    exact = {c: amount * n / total for c, n in sizes.items()}
    quotas = {c: math.floor(v) for c, v in exact.items()}
    spare = min(amount, total) - sum(quotas.values())
    for c in sorted(exact, key=lambda c: (quotas[c] - exact[c], c))[: max(spare, 0)]:
        quotas[c] += 1
    return quotas


def quota_tolerance(class_size: int) -> int:
    """How far (in originals) a class's split may end from its quota when groups are held
    out whole: 5% of the class, at least 1."""
    return max(1, math.ceil(class_size / 20))


# A group holding more than this share of its class is warned about.
LARGE_GROUP_SHARE = 0.1


def assign_splits(
    originals: Sequence[Original],
    val: float | int,
    test: float | int,
    seed: int,
    previous: Mapping[str, str] | None = None,
) -> Holdout:
    """Decide the split of every original. `previous` maps paths to splits already given."""
    previous = previous or {}
    members: dict[str, list[Original]] = defaultdict(list)
    for o in originals:
        members[o.group].append(o)
    group_class = {
        g: sorted(Counter(o.label for o in ms).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        for g, ms in members.items()
    }
    sizes = Counter(o.label for o in originals)
    wanted = {s: _quotas(a, sizes) for s, a in (("validation", val), ("test", test))}

    split_of: dict[str, str] = {}
    too_small: list[str] = []
    large_groups: list[LargeGroup] = []
    quota_shifts: list[QuotaShift] = []
    for label in sorted(sizes):
        n = sizes[label]
        groups = sorted(
            (g for g, c in group_class.items() if c == label), key=lambda g: _rank(seed, g)
        )
        quota = {s: wanted[s][label] for s in HELD_OUT}
        if n < MIN_CLASS_TO_HOLD_OUT:
            if val or test:  # a holdout was asked for and this class cannot give one
                too_small.append(label)
            quota = dict.fromkeys(HELD_OUT, 0)
        else:
            for s, amount in (("validation", val), ("test", test)):
                if amount and quota[s] == 0:
                    quota[s] = 1
            # Train keeps at least one original.
            while quota["validation"] + quota["test"] > n - 1:
                bigger = max(HELD_OUT, key=lambda s: (quota[s], s == "validation"))
                quota[bigger] -= 1
        quota["train"] = n - quota["validation"] - quota["test"]
        tolerance = quota_tolerance(n)
        filled = Counter[str]()
        fresh: list[str] = []
        for g in groups:
            sticky = next((previous[o.path] for o in members[g] if o.path in previous), None)
            if sticky in SPLITS:
                filled[sticky] += len(members[g])
                for o in members[g]:
                    split_of[o.path] = sticky
            else:
                fresh.append(g)
        left = sum(len(members[g]) for g in fresh)
        misfits: list[str] = []  # fresh groups too large for the room their split had
        for g in fresh:
            size = len(members[g])
            left -= size
            target, fits = _place(size, filled, quota, tolerance)
            if left == 0 and filled["train"] == 0:
                target = "train"  # the last group keeps the class present in train
            if not fits:
                misfits.append(g)
            filled[target] += size
            for o in members[g]:
                split_of[o.path] = target
        for g in groups:
            size = len(members[g])
            if size > 1 and size > LARGE_GROUP_SHARE * n:
                split = split_of[members[g][0].path]
                in_class = sum(o.label == label for o in members[g])
                large_groups.append(LargeGroup(label, g, size, n, split, in_class))
        if misfits and any(abs(filled[s] - quota[s]) > tolerance for s in SPLITS):
            worst = max(misfits, key=lambda g: (len(members[g]), g))
            counts = {s: filled[s] for s in SPLITS}
            quotas = {s: quota[s] for s in SPLITS}
            quota_shifts.append(QuotaShift(label, worst, len(members[worst]), quotas, counts))
    return Holdout(split_of, too_small, large_groups, quota_shifts)


def _place(
    size: int, filled: Mapping[str, int], quota: Mapping[str, int], tolerance: int
) -> tuple[str, bool]:
    """The split a fresh group of `size` originals goes to, and whether it fit there.

    The first held-out split that still lacks originals and that the group does not push
    past its quota by more than `tolerance`; else train. One original always fits, so
    without groups this is the plain rule. A group that would push train past its quota
    (by more than the tolerance, train not already past it) goes where it overshoots least.
    """
    for s in HELD_OUT:
        if filled[s] < quota[s] and filled[s] + size <= quota[s] + tolerance:
            return s, True
    room = quota["train"] - filled["train"]
    if room < 0 or size <= room + tolerance:
        # Held out full (it fits in train) or too large for what held-out still lacks.
        return "train", all(filled[s] >= quota[s] for s in HELD_OUT)
    least = min(SPLITS, key=lambda s: filled[s] + size - quota[s])
    return least, False


def hold_out(
    dataset: Dataset,
    options: ExpandOptions,
    previous_header: Mapping[str, Any],
    found: Sequence[Sequence[str]] | None = None,
    phase: Phase | None = None,
    hashes: Mapping[str, ImageHash] | None = None,
) -> tuple[Grouping, Holdout]:
    """Duplicates kept together, then the holdout; sticky to the previous header's splits.
    `found`: the duplicate clusters, when known (see group_duplicates). `hashes`: sha256 ->
    pHash already taken (a store ingest hashes the bytes it reads), beside the header's."""
    previous_splits = {
        h["path"]: h["split"] for h in previous_header.get("holdout", []) if isinstance(h, dict)
    }
    source_split = uses_source_split(dataset, options)
    if source_split:
        # The source's own split is the split: duplicates across it are reported (the
        # user's split leaks), never moved.
        previous_splits = dict(dataset.given_splits)
    elif options.resplit:
        previous_splits = {}
    known: Mapping[str, ImageHash] = _known_hashes(previous_header)
    if hashes:  # a first run's (one per source): merged only when there is more to merge
        known = {**known, **hashes} if known else hashes
    grouping = group_duplicates(
        dataset.root,
        dataset.originals,
        options.near_duplicates,
        known,
        previous_splits,
        threads=options.workers or default_workers(),
        found=found,
        phase=phase,
    )
    if source_split:
        given = {o.path: dataset.given_splits[o.path] for o in grouping.originals}
        return grouping, Holdout(given, [])
    if dataset.task != "classification":  # multi-object images: see stages/multilabel.py
        split_of = stratify(
            grouping.originals,
            options.holdout_val,
            options.holdout_test,
            options.seed,
            previous_splits,
            layout_split=not options.resplit,
        )
        return grouping, Holdout(split_of, [])
    holdout = assign_splits(
        grouping.originals,
        options.holdout_val,
        options.holdout_test,
        options.seed,
        previous_splits,
    )
    return grouping, holdout


STICKY_OPTIONS = (("seed", "--seed"), ("val", "--val"), ("test", "--test"))


def check_same_holdout(
    previous_header: Mapping[str, Any], dataset: Dataset, options: ExpandOptions
) -> None:
    """An OUT keeps its split across runs: a rerun that asks for another one stops and says
    what is there, unless --resplit (or the source's own split) decides."""
    before = previous_header.get("options")
    if options.resplit or uses_source_split(dataset, options) or not isinstance(before, dict):
        return
    if before.get("split") == "source":
        return  # an earlier run kept the source's split; this one holds out for itself
    now = {"seed": options.seed, "val": options.holdout_val, "test": options.holdout_test}
    changed = [flag for key, flag in STICKY_OPTIONS if key in before and before[key] != now[key]]
    if not changed:
        return
    used = " ".join(f"{flag} {before[key]}" for key, flag in STICKY_OPTIONS if key in before)
    counts = Counter(
        h.get("split") for h in previous_header.get("holdout", []) if isinstance(h, dict)
    )
    held = ", ".join(f"{counts[s]} {s}" for s in SPLITS if counts[s])
    asked = " ".join(f"{flag} {now[key]}" for key, flag in STICKY_OPTIONS if flag in changed)
    raise DatasetError(
        f"the output was split with {used} ({held} originals) and keeps that split; this run "
        f"asks for {asked}. Rerun with {used} to update it, add --resplit to hold out again "
        "(the outputs of originals that move are rebuilt), or choose a new output folder"
    )


def uses_source_split(dataset: Dataset, options: ExpandOptions) -> bool:
    """Whether the run keeps the source's own split (it has one, and --resplit is not given)."""
    return bool(dataset.given_splits) and not options.resplit


def check_holdout_options(dataset: Dataset, options: ExpandOptions) -> None:
    """A source already split takes no holdout options unless --resplit pools it; fractions
    must leave train something."""
    val, test = options.holdout_val, options.holdout_test
    if isinstance(val, float) and isinstance(test, float) and val + test >= 1:
        raise DatasetError(
            f"--val {val} and --test {test} add up to {val + test:g}: nothing would be left "
            "for train; their sum must be below 1"
        )
    if not uses_source_split(dataset, options):
        return
    given = [
        f"--{name}"
        for name, v in (
            ("val", options.val),
            ("test", options.test),
            ("group-by", options.group_by),
        )
        if v is not None
    ]
    if given:
        counts = Counter(dataset.given_splits[o.path] for o in dataset.originals)
        found = ", ".join(f"{counts[s]} {s}" for s in SPLITS if counts[s])
        raise DatasetError(
            f"{dataset.root} is already split ({dataset.layout}: {found} originals), so "
            f"{' and '.join(given)} would not be used: leave {'them' if len(given) > 1 else 'it'} "
            "out to keep your split, or add --resplit to pool every split and hold out again"
        )


def holdout_entries(
    originals: Iterable[Original], split_of: Mapping[str, str], hashes: Mapping[str, ImageHash]
) -> Iterator[dict[str, str]]:
    """The header's `holdout`: an entry per original, made one at a time."""
    for o in originals:
        entry = {
            "path": o.path,
            "sha256": o.sha256,
            "label": o.label,
            "group": o.group,
            "split": split_of[o.path],
        }
        if o.path in hashes:
            entry["phash"] = hashes[o.path].to_hex()
        yield entry


def _known_hashes(header: Mapping[str, Any]) -> dict[str, ImageHash]:
    """sha256 -> perceptual hash of the originals an earlier run hashed (saves a decode)."""
    known: dict[str, ImageHash] = {}
    for h in header.get("holdout", []):
        if isinstance(h, dict) and isinstance(h.get("sha256"), str):
            try:
                known[h["sha256"]] = ImageHash.from_hex(h["phash"])
            except (KeyError, TypeError, ValueError):
                continue  # an older header without hashes: hash again
    return known
