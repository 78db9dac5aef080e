"""The run's shared values: `Rejections` keeps any number of rejected inputs with bounded
memory (most of them in a temporary file), and gives every one back."""

from __future__ import annotations

from augment.model import Rejected, Rejections, in_path_order


def test_rejections_past_what_is_held_all_come_back_in_order() -> None:
    """More rejections than are held in memory: every one comes back, in the order added,
    with its retry flag, each reason text one string however many rows give it."""
    added = [
        Rejected(f"images/{i % 997:04d}/{i:08d}.jpg", "file not found", retry=i % 7 == 0)
        for i in range(70_000)
    ]
    rejections = Rejections(added)
    back = list(rejections)
    assert len(rejections) == 70_000 and back == added
    assert [r.retry for r in back] == [r.retry for r in added]  # not part of ==
    assert len({id(r.reason) for r in back}) == 1
    assert rejections.reasons == {"file not found": 70_000}
    assert list(rejections) == added  # may be read again


def test_by_path_sorts_and_keeps_each_path_and_reason_once() -> None:
    rejections = Rejections(
        [
            Rejected("b.jpg", "file not found"),
            Rejected("a.jpg", "labels.csv line 3: duplicate row; first row kept"),
            Rejected("a.jpg", "symbolic link loop"),
        ]
    )
    more = [Rejected("a.jpg", "symbolic link loop"), Rejected("0.jpg", "exact duplicate of a")]
    assert list(rejections.by_path(more)) == [
        Rejected("0.jpg", "exact duplicate of a"),
        Rejected("a.jpg", "labels.csv line 3: duplicate row; first row kept"),
        Rejected("a.jpg", "symbolic link loop"),
        Rejected("b.jpg", "file not found"),
    ]
    assert len(rejections) == 3  # the original is left as it was
    assert in_path_order([Rejected("z", "r"), Rejected("y", "r")]) == [
        Rejected("y", "r"),
        Rejected("z", "r"),
    ]


def test_many_distinct_reasons_are_counted_within_a_bound() -> None:
    """A reason naming a line number is distinct on every row: past a thousand distinct
    texts the others are counted together, and each is still given back whole."""
    added = [Rejected(f"{i}.jpg", f"labels.csv line {i}: duplicate row") for i in range(3_000)]
    rejections = Rejections(added)
    assert list(rejections) == added
    assert len(rejections.reasons) == 1_001 and sum(rejections.reasons.values()) == 3_000
    assert rejections.reasons["(other reasons)"] == 2_000
