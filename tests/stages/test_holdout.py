"""The holdout rule: stratified, group-aware, deterministic, sticky."""

from __future__ import annotations

from collections import Counter

import pytest

from augment.errors import DatasetError
from augment.model import Original
from augment.stages.holdout import assign_splits, parse_amount
from augment.stages.ingest import ingest
from tests.helpers import DIGITS, TEXTURES


def originals(counts: dict[str, int], group_size: int = 1) -> list[Original]:
    out = []
    for label, n in counts.items():
        for i in range(n):
            path = f"{label}/img{i:03d}.jpg"
            out.append(
                Original(
                    path=path,
                    label=label,
                    group=f"{label}/{i // group_size}",
                    sha256=f"{label}{i}",
                    format="JPEG",
                    width=10,
                    height=10,
                )
            )
    return out


def test_fractions_are_stratified_per_class() -> None:
    items = originals({"a": 50, "b": 20, "c": 10})
    split_of = assign_splits(items, 0.2, 0.1, seed=0).split_of
    got = Counter((o.label, split_of[o.path]) for o in items)
    assert got[("a", "validation")] == 10 and got[("a", "test")] == 5
    assert got[("b", "validation")] == 4 and got[("b", "test")] == 2
    assert got[("c", "validation")] == 2 and got[("c", "test")] == 1


def test_counts_are_totals_shared_in_proportion() -> None:
    items = originals({"a": 30, "b": 10})
    split_of = assign_splits(items, 8, 4, seed=0).split_of
    got = Counter((o.label, split_of[o.path]) for o in items)
    assert got[("a", "validation")] + got[("b", "validation")] == 8
    assert got[("a", "validation")] == 6 and got[("b", "test")] == 1


def test_small_classes() -> None:
    items = originals({"big": 40, "three": 3, "two": 2})
    holdout = assign_splits(items, 0.1, 0.1, seed=0)
    got = Counter((o.label, holdout.split_of[o.path]) for o in items)
    # >= 3 originals: at least one in each held-out split, one left for train.
    assert got[("three", "validation")] == 1 and got[("three", "test")] == 1
    assert got[("three", "train")] == 1
    # < 3: too small to hold out; all in train and reported.
    assert got[("two", "train")] == 2 and holdout.too_small == ["two"]


def test_groups_stay_together() -> None:
    items = originals({"a": 60, "b": 30}, group_size=3)
    split_of = assign_splits(items, 0.2, 0.2, seed=4).split_of
    groups: dict[str, set[str]] = {}
    for o in items:
        groups.setdefault(o.group, set()).add(split_of[o.path])
    assert all(len(s) == 1 for s in groups.values())
    assert {"validation", "test", "train"} <= {split_of[o.path] for o in items}


def test_group_by_regex_on_real_paths() -> None:
    # Group digits by the dataset-order suffix: digit3_01 and digit7_01 share group "_01".
    dataset = ingest(DIGITS, group_by=r"_(\d+)\.png$")
    assert {o.group for o in dataset.originals} == {f"{i:02d}" for i in range(1, 7)}
    split_of = assign_splits(dataset.originals, 0.2, 0.2, seed=1).split_of
    by_group: dict[str, set[str]] = {}
    for o in dataset.originals:
        by_group.setdefault(o.group, set()).add(split_of[o.path])
    assert all(len(s) == 1 for s in by_group.values())


def test_seed_changes_the_split_and_is_deterministic() -> None:
    items = ingest(TEXTURES).originals
    a = assign_splits(items, 0.2, 0.2, seed=1).split_of
    assert a == assign_splits(list(reversed(items)), 0.2, 0.2, seed=1).split_of
    assert a != assign_splits(items, 0.2, 0.2, seed=2).split_of


def test_sticky_when_the_dataset_grows() -> None:
    items = originals({"a": 20, "b": 20})
    first = assign_splits(items, 0.2, 0.1, seed=0).split_of
    grown = originals({"a": 40, "b": 25})
    second = assign_splits(grown, 0.2, 0.1, seed=0, previous=first).split_of
    assert all(second[p] == s for p, s in first.items())
    got = Counter((o.label, second[o.path]) for o in grown)
    assert got[("a", "validation")] == 8 and got[("a", "test")] == 4


def test_parse_amount() -> None:
    assert parse_amount("0.15", "--val") == 0.15
    assert parse_amount("12", "--val") == 12
    assert parse_amount("0", "--val") == 0.0
    for bad in ("-1", "abc", "2.5", "nan"):
        with pytest.raises(DatasetError):
            parse_amount(bad, "--val")


def test_a_group_spanning_classes_is_reported_with_its_members_per_class() -> None:
    # One group holds 6 "a" and 6 "b" originals (ties go to the first class by name): the
    # warning must say how many of class "a"'s 8 it holds, not "holds 12 of its 8 originals"
    # as if all twelve were "a"s.
    items = originals({"a": 8, "b": 8})
    shared = [
        Original(o.path, o.label, "shared", o.sha256, o.format, o.width, o.height)
        for o in items
        if int(o.path.split("img")[1][:3]) < 6
    ]
    rest = [o for o in items if int(o.path.split("img")[1][:3]) >= 6]
    holdout = assign_splits(shared + rest, 0.2, 0.2, seed=0)
    (big,) = holdout.large_groups
    assert (big.label, big.group, big.class_size) == ("a", "shared", 8)
    assert big.size == 12 and big.in_class == 6
    assert big.in_class <= big.class_size
