"""The holdout of an annotated set: an image holds objects of several classes, so the
classification rule (a class's originals split by its quotas) does not apply. Used by
holdout.hold_out for detection and segmentation sets; docs/holdout.md, "Annotated sets".

Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) over groups:

- Each split wants its fraction of the images, and of the images holding each class.
- Repeatedly take the class with the fewest images left to place (the rarest first: the
  ones a late choice would starve), and place each group holding it (in a seeded hash order)
  in the split that still wants most images of that class; ties go to the split that still
  wants most images, then train, validation, test.
- Images without objects (negatives) fill what each split still wants in images.
- A group (`--group-by`, duplicate clusters) moves whole; its classes are the union of its
  images' classes.
- Sticky and pre-split: an image that an earlier run placed, or that the source's layout
  places (images/train, images/val; instances_val.json), keeps that split, and its whole
  group with it; the rest fill what each split still wants.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from augment.model import Original

_SPLITS = ("train", "validation", "test")


def _rank(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}\x00{group}".encode()).hexdigest()


def _fraction(amount: float | int, total: int) -> float:
    return float(amount) if isinstance(amount, float) else min(amount, total) / max(total, 1)


def classes_of(original: Original) -> set[str]:
    if original.annotation is None:
        return set()
    return {o.label for o in original.annotation.objects}


def stratify(
    originals: Sequence[Original],
    val: float | int,
    test: float | int,
    seed: int,
    previous: Mapping[str, str] | None = None,
    layout_split: bool = True,
) -> dict[str, str]:
    """path -> split for every original (see the module's docstring); without
    `layout_split` (--resplit) the source layout's own split is not kept."""
    previous = previous or {}
    members: dict[str, list[Original]] = defaultdict(list)
    for o in originals:
        members[o.group].append(o)
    classes = {g: set().union(*(classes_of(o) for o in ms)) for g, ms in members.items()}
    total = len(originals)
    share = {"validation": _fraction(val, total), "test": _fraction(test, total)}
    share["train"] = max(0.0, 1.0 - share["validation"] - share["test"])
    per_class = Counter(c for g, ms in members.items() for o in ms for c in classes_of(o))
    wanted = {s: Counter({c: share[s] * n for c, n in per_class.items()}) for s in _SPLITS}
    wanted_size = {s: share[s] * total for s in _SPLITS}
    split_of: dict[str, str] = {}

    def place(group: str, split: str) -> None:
        for o in members[group]:
            split_of[o.path] = split
            for c in classes_of(o):
                wanted[split][c] -= 1
        wanted_size[split] -= len(members[group])

    fresh = []
    for g in sorted(members, key=lambda g: _rank(seed, g)):
        given = [_given(o, previous, layout_split) for o in members[g]]
        fixed = next((s for s in given if s), None)
        if fixed is not None:
            place(g, fixed)
        else:
            fresh.append(g)
    while fresh:
        left = Counter(c for g in fresh for c in classes[g])
        if not left:  # negatives: where most images are still wanted
            for g in fresh:
                place(g, max(_SPLITS, key=lambda s: (wanted_size[s], -_SPLITS.index(s))))
            break
        rarest = min(left, key=lambda c: (left[c], c))
        for g in [g for g in fresh if rarest in classes[g]]:
            target = max(
                _SPLITS,
                key=lambda s: (wanted[s][rarest], wanted_size[s], -_SPLITS.index(s)),
            )
            place(g, target)
        fresh = [g for g in fresh if rarest not in classes[g]]
    return split_of


def _given(original: Original, previous: Mapping[str, str], layout_split: bool) -> str | None:
    """The split an earlier run or the source's own layout gave the original."""
    if previous.get(original.path) in _SPLITS:
        return previous[original.path]
    if not layout_split:
        return None
    if original.annotation is not None and original.annotation.split in _SPLITS:
        return original.annotation.split
    return None
