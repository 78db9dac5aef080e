"""`--balance`: every class ends the train split with exactly the same count."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from augment.cli import main
from augment.commands.report import format_summary
from augment.errors import DatasetError
from augment.model import Annotation, ExpandOptions, LabeledObject, Original
from augment.run import expand
from augment.stages.balance import Brought, balanced_variants, instance_variants, spread
from tests.helpers import DETECTION, TEXTURES


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


# --- --balance instances (annotated sets): objects per class, not images -------------------


def annotated(path: str, *labels: str) -> Original:
    objects = tuple(LabeledObject(label, (0.0, 0.0, 4.0, 4.0)) for label in labels)
    annotation = Annotation(f"{path}.txt", f"{path}-labels", objects)
    label = labels[0] if labels else ""
    return Original(path, label, path, f"{path:0>64}", "PNG", 8, 8, annotation)


def test_a_rare_class_beside_a_common_one_does_not_inflate_the_common_one() -> None:
    """One image holds the only `rare` object beside a `common` one; nine hold a `common`
    alone. Copying the rare image until `rare` matches (what per-image balancing does)
    would add 19 `common` objects; instances stops `common` at its --times N total."""
    train = {"common": [annotated("rare+common", "common", "rare")]}
    train["common"] += [annotated(f"c{i}", "common") for i in range(9)]
    plain = {"common": (0, 1)}  # --times 2
    variants, report = instance_variants(train, plain, seed=0)
    assert report == {
        "common": {"originals": 10, "times": 20, "planned": 20},
        "rare": {"originals": 1, "times": 2, "planned": 3 * 2},  # capped at MAX_REPEAT x N
    }
    assert variants["rare+common"] == (0, 1, 2, 3, 4, 5)
    assert sum(len(v) for v in variants.values()) == 20  # as many images as --times 2


def test_instances_is_refused_for_class_folders() -> None:
    with pytest.raises(DatasetError, match="only an annotated set"):
        instance_variants(originals({"a": 2}), {"a": (0, 1)}, seed=0)


def _objects_per_class(out: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in (out / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "train":
            counts.update(record["annotation"]["counts"])
    return counts


def test_instances_evens_objects_on_the_sample_set_where_times_n_does_not(
    tmp_path: Path,
) -> None:
    """sample_data/detection_yolo, --times 3: the objects per class the outputs hold (after
    the transforms' drops), plain against --balance instances."""
    plain = ExpandOptions(times=3, recipe="detection", workers=1)
    expand(DETECTION, tmp_path / "plain", plain)
    balanced = ExpandOptions(times=3, recipe="detection", workers=1, balance="instances")
    summary = expand(DETECTION, tmp_path / "balanced", balanced)
    before, after = (
        _objects_per_class(tmp_path / "plain"),
        _objects_per_class(tmp_path / "balanced"),
    )
    assert max(before.values()) / min(before.values()) > 1.4
    assert max(after.values()) / min(after.values()) < 1.2
    assert sum(after.values()) <= 1.5 * sum(before.values())
    header = json.loads((tmp_path / "balanced" / "augment.json").read_text())
    assert header["options"]["balance"] == "instances"
    assert header["balance"]["objects"] == summary.balanced_objects
    planned = [n["planned"] for n in summary.balanced_objects.values()]
    assert max(planned) - min(planned) <= 2
    assert "balanced train objects" in format_summary(summary)


def test_the_command_prints_the_object_counts_and_a_rerun_prints_them_again(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    command = ["expand", str(DETECTION), str(out), "-n", "2", "-r", "detection", "-j", "1"]
    command += ["--balance", "instances"]
    first = CliRunner().invoke(main, command)
    assert first.exit_code == 0, first.output
    table = first.output[first.output.index("balanced train objects") :].splitlines()[:5]
    assert [line.split()[0] for line in table[2:]] == ["one", "seven", "zero"]
    again = CliRunner().invoke(main, command)
    assert "0 files written" in again.output and "\n".join(table) in again.output


def test_objects_a_mix_brings_are_counted_and_shown_apart() -> None:
    """Every variant of `c0` is a mix that brings one `rare` object: `rare` reaches its
    target from them, and the plain --times N count has them too."""
    train = {
        "common": [annotated("rare", "rare")] + [annotated(f"c{i}", "common") for i in range(4)]
    }

    def added(original: Original, variant: int, wanted: Mapping[str, float] | None) -> Brought:
        return Brought(Counter({"rare": 1}) if original.path == "c0" else Counter())

    plain = {"common": (0, 1), "rare": (0, 1)}
    variants, report = instance_variants(train, plain, seed=0, added=added)
    assert report["rare"]["times"] == 2 + 1  # its own two images, and c0's variant 1
    assert report["rare"]["mixed"] == len(variants["c0"]) - 1  # variant 0 is never mixed
    assert report["rare"]["planned"] == len(variants["rare"]) + report["rare"]["mixed"]
    assert report["common"]["mixed"] == 0


def _made_from(out: Path, src: Path, names: list[str]) -> Counter[str]:
    """The objects per class the train outputs were made from: every source's objects,
    read from its own label file (a mosaic has four sources)."""
    counts: Counter[str] = Counter()
    for line in (out / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] != "train":
            continue
        for source in record["sources"]:
            labels = src / source["path"].replace("images/", "labels/", 1)
            rows = labels.with_suffix(".txt").read_text().splitlines()
            counts.update(names[int(row.split()[0])] for row in rows if row.strip())
    return counts


def test_instances_counts_the_objects_of_mosaic_partners_exactly(tmp_path: Path) -> None:
    """sample_data/detection_yolo, --times 3, half the variants mosaics: the planned counts
    are the objects the outputs were made from, partners' included."""
    recipe = tmp_path / "mosaic.yaml"
    bundled = Path(__file__).resolve().parents[2] / "pipelines" / "detection.yaml"
    recipe.write_text(bundled.read_text() + "mix:\n  - Mosaic: {p: 0.5}\n")
    options = ExpandOptions(times=3, recipe=str(recipe), workers=1, balance="instances")
    summary = expand(DETECTION, tmp_path / "out", options)
    names = ["zero", "one", "seven"]
    made_from = _made_from(tmp_path / "out", DETECTION, names)
    assert {c: n["planned"] for c, n in summary.balanced_objects.items()} == made_from
    assert all(n["mixed"] > 0 for n in summary.balanced_objects.values())
    assert "of which from mixes" in format_summary(summary)
