"""Sorting past a memory budget (augment/rerun/spill.py), and a run whose records spill to
disk writing the same files."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import augment.full_run as build_module
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.model import ExpandOptions
from augment.rerun import spill as spill
from augment.rerun.spill import SortedSpill, merge_groups
from augment.run import expand
from augment.stages.executor import Executor, in_process
from augment.stages.plan import SourceTask
from augment.stages.worker import RunContext, ShardResult
from tests.helpers import DIGITS, file_tree


def entries(count: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    keys = [f"train/{rng.choice('abc')}/x{rng.randrange(count // 2)}.png" for _ in range(count)]
    return [(key, n) for n, key in enumerate(keys)]  # repeated keys, numbered as added


@pytest.mark.parametrize("budget", [1, 2_000, 10**9])
def test_spill_sorts_by_key_keeping_the_order_of_equal_keys(budget: int) -> None:
    added = entries(1_000)
    with SortedSpill[int](budget) as spill:
        for key, value in added:
            spill.add(key, value, size=50)
        expected = sorted(added, key=lambda e: e[0])  # stable: equal keys as added
        assert list(spill) == expected
        assert list(spill) == expected  # iterating again gives the same
        assert len(spill) == len(added)


def test_merge_groups_gives_each_key_with_every_streams_values() -> None:
    left = sorted(entries(300, seed=1), key=lambda e: e[0])
    right = sorted(entries(300, seed=2), key=lambda e: e[0])
    groups = list(merge_groups(left, right))
    keys = [key for key, _ in groups]
    assert keys == sorted({k for k, _ in left} | {k for k, _ in right})
    for key, (mine, theirs) in groups:
        assert mine == [v for k, v in left if k == key]
        assert theirs == [v for k, v in right if k == key]


def state_without_stamps(out: Path) -> dict[str, object]:
    """The state's content but the stamps (inode and mtime differ between two folders);
    checks on the way that the files are the compact JSON they must be."""
    text = (out / STATE_NAME).read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, separators=(",", ":")) + "\n"
    lines = (out / OUTPUTS_STATE_NAME).read_text().splitlines()
    outputs = [json.loads(line) for line in lines]
    assert lines == [json.dumps(entry, separators=(",", ":")) for entry in outputs]
    assert [entry["path"] for entry in outputs] == sorted(entry["path"] for entry in outputs)
    doc["outputs"] = outputs
    for entry in [*doc["sources"].values(), *outputs]:
        entry.pop("stamp")
    doc.get("last_run", {}).pop("output", None)  # a digest of OUT's stamps
    return doc


def interrupt_after(shards: int) -> Executor:
    def run(ctx: RunContext, work: Iterable[list[SourceTask]]) -> Iterator[ShardResult]:
        for n, result in enumerate(in_process(ctx, work)):
            if n == shards:
                raise KeyboardInterrupt
            yield result

    return run


@pytest.mark.slow
def test_a_run_with_its_records_on_disk_writes_the_same_files(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records spilled to disk a few at a time (and their runs merged as they pile up) give
    byte for byte what records held in memory give: first run, a rerun with another recipe
    (reused, stale and new outputs), one interrupted by Ctrl-C, and the run that resumes."""
    other = tmp_path / "other.yaml"
    other.write_text(small_recipe.read_text().replace("[-12, 12]", "[-20, 20]"))
    monkeypatch.setattr(build_module, "OUTPUTS_PER_SHARD", 8)
    steps: list[tuple[Path, Executor | None]] = [
        (small_recipe, None),
        (other, None),
        (small_recipe, interrupt_after(3)),
        (small_recipe, None),
    ]
    seen: dict[int, list[object]] = {}
    default = spill.SPILL_BUDGET
    for budget in (default, 1):  # 1: every entry goes to disk
        monkeypatch.setattr(spill, "SPILL_BUDGET", budget)
        out = tmp_path / f"out-{budget}"
        seen[budget] = []
        for recipe, executor in steps:
            options = ExpandOptions(times=3, recipe=str(recipe), val=0.2, test=0.1, workers=1)
            with contextlib.suppress(KeyboardInterrupt):
                expand(DIGITS, out, options, executor=executor or in_process)
            header = (out / "augment.json").read_text()
            assert header == json.dumps(json.loads(header), indent=2, ensure_ascii=False) + "\n"
            seen[budget].append((file_tree(out), state_without_stamps(out)))
    assert seen[1] == seen[default]
