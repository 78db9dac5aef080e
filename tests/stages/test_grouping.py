"""Near-duplicate grouping on real look-alike images: copies of one picture are held out
together, look-alikes (handwritten digits of one class) are not chained into giant groups,
and the holdout keeps every class near its quotas."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from augment.cli import main
from augment.defaults import DEFAULT_MAX_DISTANCE
from augment.model import ExpandOptions, Original
from augment.stages.duplicates import group_duplicates
from augment.stages.holdout import assign_splits, hold_out, quota_tolerance
from augment.stages.ingest import ingest

VAL = TEST = 0.2


def render_digits(root: Path, per_class: int | None = None) -> Path:
    """scikit-learn's 8x8 digits as 32x32 PNGs (x4 nearest, like sample_data/digits)."""
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        indices = np.nonzero(bunch.target == digit)[0][:per_class]
        for n, i in enumerate(indices):
            pixels = (bunch.images[i] * 255 / 16).round().astype(np.uint8)
            image = Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST)
            image.save(root / str(digit) / f"digit{digit}_{n:03}.png")
    return root


@pytest.fixture(scope="module")
def lookalikes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 1,797 digits (about 180 a class): at this size the look-alikes of a class
    chained into groups of up to 44 when pairs were merged transitively, and validation
    quotas ended 20 originals off."""
    return render_digits(tmp_path_factory.mktemp("lookalikes") / "src")


def per_class_splits(originals: list[Original], split_of: dict[str, str]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for o in originals:
        counts.setdefault(o.label, Counter())[split_of[o.path]] += 1
    return counts


@pytest.mark.slow
def test_every_class_ends_within_the_tolerance_of_its_quotas(lookalikes: Path) -> None:
    dataset = ingest(lookalikes)
    options = ExpandOptions(val=VAL, test=TEST, workers=2)
    _, holdout = hold_out(dataset, options, {})
    assert holdout.large_groups == []  # no chain of look-alikes: none holds a tenth of a class
    for label, counts in per_class_splits(dataset.originals, holdout.split_of).items():
        n = sum(counts.values())
        tolerance = quota_tolerance(n)
        for split, fraction in (("validation", VAL), ("test", TEST)):
            assert abs(counts[split] - math.floor(fraction * n + 0.5)) <= tolerance, (label, counts)
    assert holdout.quota_shifts == []


@pytest.mark.slow
def test_grouping_does_not_depend_on_order_or_threads(lookalikes: Path) -> None:
    dataset = ingest(lookalikes)
    one = group_duplicates(dataset.root, dataset.originals, DEFAULT_MAX_DISTANCE, threads=1)
    backwards = group_duplicates(
        dataset.root, dataset.originals[::-1], DEFAULT_MAX_DISTANCE, threads=4
    )
    assert one.clusters == backwards.clusters
    assert {o.path: o.group for o in one.originals} == {
        o.path: o.group for o in backwards.originals
    }


CRAFTED = ("half", "double", "jpeg", "mirror", "bytes")


def add_copies(root: Path, sources: list[str]) -> dict[str, str]:
    """Crafted copies of each source next to it: copy path -> source path."""
    copies: dict[str, str] = {}
    for rel in sources:
        path = root / rel
        with Image.open(path) as img:
            img.load()
        stem = path.with_suffix("")
        made = {
            "half": (img.resize((img.width // 2, img.height // 2), Image.Resampling.BOX), ".png"),
            "double": (
                img.resize((img.width * 2, img.height * 2), Image.Resampling.BILINEAR),
                ".png",
            ),
            "jpeg": (img, ".jpg"),
            "mirror": (ImageOps.mirror(img), ".png"),
        }
        for kind, (copy, suffix) in made.items():
            target = Path(f"{stem}_{kind}{suffix}")
            copy.save(target, quality=50) if suffix == ".jpg" else copy.save(target)
            copies[target.relative_to(root).as_posix()] = rel
        target = Path(f"{stem}_bytes.png")
        shutil.copyfile(path, target)
        copies[target.relative_to(root).as_posix()] = rel
    return copies


@pytest.mark.slow
def test_crafted_copies_stay_with_their_originals(tmp_path: Path) -> None:
    root = render_digits(tmp_path / "src", per_class=40)
    sources = [f"{d}/digit{d}_{n:03}.png" for d in range(10) for n in (0, 7, 21)]
    copies = add_copies(root, sources)
    dataset = ingest(root)
    grouping, holdout = hold_out(dataset, ExpandOptions(val=VAL, test=TEST, workers=1), {})
    group = {o.path: o.group for o in grouping.originals}
    missed = [c for c, source in copies.items() if group[c] != group[source]]
    assert missed == []
    assert all(holdout.split_of[c] == holdout.split_of[s] for c, s in copies.items())


def test_exact_copies_group_even_with_a_tight_threshold(tmp_path: Path) -> None:
    root = render_digits(tmp_path / "src", per_class=5)
    shutil.copyfile(root / "3" / "digit3_001.png", root / "8" / "copied.png")
    dataset = ingest(root)
    grouping = group_duplicates(dataset.root, dataset.originals, 0)
    assert [c.paths for c in grouping.clusters] == [("3/digit3_001.png", "8/copied.png")]


def splits_of(out: Path) -> dict[str, str]:
    header = json.loads((out / "augment.json").read_text())
    return {h["path"]: h["split"] for h in header["holdout"]}


def test_a_rerun_never_moves_what_an_earlier_run_held_out(tmp_path: Path) -> None:
    root = render_digits(tmp_path / "src", per_class=40)
    dataset = ingest(root)
    # An earlier run without grouping; then copies are added and grouping is on.
    before = assign_splits(dataset.originals, VAL, TEST, 0).split_of
    sources = [p for p in sorted(before) if before[p] != "train"][:6]
    add_copies(root, sources)
    header = {
        "holdout": [
            {"path": p, "split": s, "sha256": o.sha256}
            for o in dataset.originals
            for p, s in [(o.path, before[o.path])]
        ]
    }
    _, holdout = hold_out(ingest(root), ExpandOptions(val=VAL, test=TEST), header)
    assert {p: holdout.split_of[p] for p in before} == before
    for copy, source in ((c, s) for s in sources for c in holdout.split_of if c != s):
        if Path(copy).stem.startswith(Path(source).stem + "_"):
            assert holdout.split_of[copy] == before[source]


@pytest.mark.slow
def test_a_large_group_is_warned_about_and_a_quota_miss_reported(tmp_path: Path) -> None:
    # Nineteen resized copies of one "7" make a group of 20 in a class of 28: more than a
    # tenth of the class, and too large for train's quota (16), so test ends short.
    root = render_digits(tmp_path / "src", per_class=9)
    source = root / "7" / "digit7_000.png"
    with Image.open(source) as img:
        img.load()
    for n in range(19):
        side = 36 + 4 * n
        img.resize((side, side), Image.Resampling.BILINEAR).save(
            root / "7" / f"digit7_000_copy{n:02}.png"
        )
    dataset = ingest(root)
    _, holdout = hold_out(dataset, ExpandOptions(val=VAL, test=TEST), {})
    big = next(g for g in holdout.large_groups if g.label == "7")
    assert (big.group, big.class_size) == ("7/digit7_000.png", 28)
    assert big.size >= 20
    (shift,) = holdout.quota_shifts
    assert (shift.label, shift.group, shift.size) == ("7", big.group, big.size)
    assert shift.quotas == {"train": 16, "validation": 6, "test": 6}
    assert shift.counts["train"] >= 20 and sum(shift.counts.values()) == 28

    out = tmp_path / "out"
    args = ["expand", str(root), str(out), "-n", "1", "-j", "1", "--val", "0.2", "--test", "0.2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"warning: class '7': one group holds {big.size} of its 28 originals" in result.output
    assert f"class '7': group '7/digit7_000.png' ({big.size} originals) is too large" in (
        result.output
    )
