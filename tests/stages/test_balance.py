"""`--balance`: every class ends the train split with exactly the same count."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from augment.commands.report import format_summary
from augment.model import ExpandOptions, Original
from augment.run import expand
from augment.stages.balance import balanced_variants, spread
from tests.helpers import TEXTURES


def originals(sizes: dict[str, int]) -> dict[str, list[Original]]:
    return {
        label: [
            Original(f"{label}/{i}.png", label, f"{label}/{i}", f"{label}{i:060d}", "PNG", 8, 8)
            for i in range(n)
        ]
        for label, n in sizes.items()
    }


@pytest.mark.parametrize(
    ("sizes", "times", "first"),
    [({"a": 10, "b": 3, "c": 7, "d": 1}, 3, 0), ({"a": 4, "b": 9}, 1, 0), ({"x": 5, "y": 2}, 4, 1)],
)
def test_balanced_variants_give_equal_totals(sizes: dict[str, int], times: int, first: int) -> None:
    train = originals(sizes)
    plain = {c: tuple(range(first, first + times)) for c in sizes}
    plan = balanced_variants(train, plain, seed=1)
    target = max(sizes.values()) * times
    for members in train.values():
        counts = [len(plan[o.path]) for o in members]
        assert sum(counts) == target
        assert max(counts) - min(counts) <= 1
        for o in members:  # consecutive variant indices from the usual first one
            assert plan[o.path] == tuple(range(first, first + len(plan[o.path])))
    largest = max(sizes, key=lambda c: sizes[c])
    assert {len(plan[o.path]) for o in train[largest]} == {times}


def test_spread() -> None:
    assert spread(10, 4) == [3, 3, 2, 2]
    assert spread(8, 4) == [2, 2, 2, 2]


def imbalanced(root: Path) -> Path:
    for label, n in {"brick": 10, "grass": 6, "gravel": 3}.items():
        (root / label).mkdir(parents=True)
        for p in sorted((TEXTURES / label).iterdir())[:n]:
            shutil.copy(p, root / label / p.name)
    return root


@pytest.mark.parametrize("no_originals", [False, True])
def test_balance_makes_train_classes_equal(
    tmp_path: Path, small_recipe: Path, no_originals: bool
) -> None:
    src = imbalanced(tmp_path / "src")
    out = tmp_path / "out"
    options = ExpandOptions(
        times=3,
        no_originals=no_originals,
        recipe=str(small_recipe),
        val=0.2,
        test=0,
        workers=1,
        balance=True,
    )
    summary = expand(src, out, options)
    # Train originals: brick 8, grass 5, gravel 2; brick's 8 x 3 = 24 is every class's total.
    assert summary.train_originals == {"brick": 8, "grass": 5, "gravel": 2}
    assert summary.counts["train"] == {"brick": 24, "grass": 24, "gravel": 24}
    assert summary.counts["validation"] == {"brick": 2, "grass": 1, "gravel": 1}
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    per_original = Counter(r["sources"][0]["path"] for r in records if r["split"] == "train")
    grass = sorted(n for p, n in per_original.items() if p.startswith("grass/"))
    assert grass == [4, 5, 5, 5, 5]  # 24 over 5 originals: the remainder spread one each
    originals_kept = {r["sources"][0]["path"] for r in records if r["variant"] == 0}
    assert (len([p for p in originals_kept if p in per_original]) == 0) == no_originals
    text = format_summary(summary)
    assert "balanced train" in text and "gravel" in text and "2 -> 24" in text


def test_balance_holds_with_mixing(tmp_path: Path) -> None:
    """Mixed variants stay in their own class's folder, so the counts stay equal."""
    src = imbalanced(tmp_path / "src")
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "preprocess: {size: [24, 24]}\n"
        "mix:\n  - MixUp: {p: 0.5, other_class: true}\n  - CutMix: {p: 0.5, other_class: true}\n"
    )
    out = tmp_path / "out"
    options = ExpandOptions(times=2, recipe=str(recipe), val=0, test=0, workers=1, balance=True)
    summary = expand(src, out, options)
    assert summary.counts["train"] == {"brick": 20, "grass": 20, "gravel": 20}
    for label in ("brick", "grass", "gravel"):
        assert len(list((out / "train" / label).iterdir())) == 20
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sum("soft_label" in r for r in records) > 20
