"""MixUp and CutMix: soft labels that match the pixels, partners from train only, the
dominant class's folder, metadata a trainer can read, and byte-identical runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment.errors import RecipeError
from augment.imaging.codec import decode
from augment.model import ExpandOptions
from augment.recipe.build import load_recipe, parse_recipe
from augment.recipe.mixing import (
    MixSpec,
    choose_mix,
    cutmix,
    cutmix_box,
    cutmix_weight,
    dominant_label,
    mixup,
    mixup_weight,
    soft_label,
)
from augment.recipe.preprocess import apply_preprocess
from augment.run import expand
from tests.helpers import DIGITS, TEXTURES, file_tree

# No per-image transforms: every variant is exactly the mix of two preprocessed originals,
# so the test can rebuild it from the sources alone.
MIX_ONLY = """\
description: mixing only, for tests
preprocess: {size: [40, 32], fit: pad, pad_mode: edge}
mix:
  - MixUp: {p: 0.5, alpha: 0.4}
  - CutMix: {p: 0.5, alpha: 1.0}
"""

MIX_WITH_TRANSFORMS = """\
description: transforms, a policy and mixing, for tests
preprocess: {size: [32, 32], fit: pad, pad_mode: constant}
augment:
  - HorizontalFlip: {p: 0.5, except_classes: [6, 9]}
  - Affine: {rotate: [-10, 10], border_mode: constant, p: 0.5}
  - FastGaussianNoise: {sigma: [3, 8], p: 0.3}
mix:
  - MixUp: {p: 0.3, alpha: 0.4, other_class: true}
  - CutMix: {p: 0.3, alpha: 1.0}
"""


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def prepared(recipe_path: Path, src: Path) -> np.ndarray:
    recipe = load_recipe(str(recipe_path))
    # As the worker decodes it: a JPEG may come reduced when preprocessing shrinks it anyway.
    pixels = decode(
        src.read_bytes(), recipe.background, needed=recipe.preprocess.needed_source_size
    ).pixels
    return apply_preprocess(pixels, recipe.preprocess)


# --- the math, on its own -------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_blends_with_the_drawn_weight(alpha: float) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    for _ in range(20):
        w = mixup_weight(rng, alpha)
        assert 0.5 <= w <= 1 and round(w, 4) == w  # the image keeps at least half
        out = mixup(a, b, w)
        expected = w * a.astype(float) + (1 - w) * b.astype(float)
        assert np.abs(out - expected).max() <= 0.5 + 1e-9


def test_cutmix_box_area_is_the_partner_weight() -> None:
    rng = np.random.default_rng(2)
    a = np.zeros((30, 50, 3), np.uint8)
    b = np.full((30, 50, 3), 255, np.uint8)
    for _ in range(50):
        box = cutmix_box(rng, 1.0, 50, 30)
        x0, y0, x1, y1 = box
        assert 0 <= x0 <= x1 <= 50 and 0 <= y0 <= y1 <= 30
        out = cutmix(a, b, box)
        partner_share = (out[..., 0] == 255).mean()
        assert partner_share == pytest.approx(1 - cutmix_weight(box, 50, 30), abs=1e-12)
        assert partner_share <= 0.5


def test_soft_label_and_dominant_class() -> None:
    assert soft_label([("dog", 0.5), ("cat", 0.5)]) == {"cat": 0.5, "dog": 0.5}
    assert soft_label([("dog", 0.3), ("dog", 0.7)]) == {"dog": 1.0}
    # A tie goes to the image's own class; otherwise the larger weight wins.
    assert dominant_label({"cat": 0.5, "dog": 0.5}, "dog") == "dog"
    assert dominant_label({"cat": 0.6, "dog": 0.4}, "dog") == "cat"


def test_choose_mix_gives_each_entry_its_share() -> None:
    specs = [MixSpec("mixup", 0.2, 1.0), MixSpec("cutmix", 0.3, 1.0)]
    draws = np.random.default_rng(3).random(20000)
    chosen = [choose_mix(specs, float(u)) for u in draws]
    assert chosen.count(0) / len(chosen) == pytest.approx(0.2, abs=0.015)
    assert chosen.count(1) / len(chosen) == pytest.approx(0.3, abs=0.015)
    assert chosen.count(None) / len(chosen) == pytest.approx(0.5, abs=0.015)


# --- the recipe -----------------------------------------------------------------------


def test_mix_is_part_of_the_fingerprint() -> None:
    base = parse_recipe(MIX_ONLY, "m", "m.yaml")
    changed = parse_recipe(MIX_ONLY.replace("alpha: 0.4", "alpha: 0.5"), "m", "m.yaml")
    other = parse_recipe(MIX_ONLY + "    \n", "m", "m.yaml")
    assert base.fingerprint("png", 95) != changed.fingerprint("png", 95)
    assert base.fingerprint("png", 95) == other.fingerprint("png", 95)
    no_mix = parse_recipe(MIX_ONLY.split("mix:")[0], "m", "m.yaml")
    assert no_mix.fingerprint("png", 95) != base.fingerprint("png", 95)
    assert no_mix.preprocess_fingerprint("png", 95) == base.preprocess_fingerprint("png", 95)


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("  - MixUpp: {p: 0.5}\n", "did you mean 'MixUp'"),
        ("  - MixUp: {p: 0.7}\n  - CutMix: {p: 0.7}\n", "add up to 1.4"),
        ("  - MixUp: {alpha: 0}\n", "alpha must be positive"),
        ("  - CutMix: {p: 1.5}\n", "p must be between 0 and 1"),
        ("  - MixUp: {lambda: 0.3}\n", "unknown argument 'lambda'"),
        ("  - MixUp: {other_class: maybe}\n", "other_class must be true or false"),
    ],
)
def test_bad_mix_entries_fail_at_load(mix: str, message: str) -> None:
    text = MIX_ONLY.split("mix:")[0] + "mix:\n" + mix
    with pytest.raises(RecipeError, match=message):
        parse_recipe(text, "m", "m.yaml")


def test_mix_needs_a_fixed_size() -> None:
    with pytest.raises(RecipeError, match=r"preprocess\.size"):
        parse_recipe("mix:\n  - MixUp: {p: 0.5}\n", "m", "m.yaml")


def test_bundled_mixup_recipe_mixes() -> None:
    recipe = load_recipe("mixup")
    assert {m.kind for m in recipe.mix} == {"mixup", "cutmix"}


# --- end to end -----------------------------------------------------------------------


def test_soft_labels_match_the_pixels_and_partners_are_train(tmp_path: Path) -> None:
    recipe = write(tmp_path, "mix.yaml", MIX_ONLY)
    out = tmp_path / "out"
    options = ExpandOptions(
        times=6, recipe=str(recipe), val=0.2, test=0.1, seed=4, workers=1, output_format="png"
    )
    expand(TEXTURES, out, options)
    header = json.loads((out / "augment.json").read_text())
    train = {h["path"]: h for h in header["holdout"] if h["split"] == "train"}
    held_out = {h["sha256"] for h in header["holdout"] if h["split"] != "train"}
    records = manifest(out)
    mixed = [r for r in records if len(r["sources"]) == 2]
    kinds = {r["params"][-1]["transform"] for r in mixed}
    # Every variant mixes (the two entries' p add up to 1) unless its draw was extreme (a
    # weight that rounds to 0 or 1 leaves it unmixed); both kinds occur.
    assert 0.9 * 5 * len(train) <= len(mixed) <= 5 * len(train)
    assert kinds == {"MixUp", "CutMix"}
    cache: dict[str, np.ndarray] = {}

    def source(path: str) -> np.ndarray:
        if path not in cache:
            cache[path] = prepared(recipe, TEXTURES / path)
        return cache[path]

    for r in mixed:
        own, partner = r["sources"]
        assert 0 < own["weight"] < 1 and 0 < partner["weight"] < 1
        assert own["weight"] + partner["weight"] == pytest.approx(1.0, abs=1e-12)
        assert partner["path"] in train and partner["sha256"] not in held_out
        assert partner["sha256"] == train[partner["path"]]["sha256"]
        assert partner["sha256"] != own["sha256"]
        labels = (train[own["path"]]["label"], train[partner["path"]]["label"])
        assert r["soft_label"] == soft_label(
            [(labels[0], own["weight"]), (labels[1], partner["weight"])]
        )
        # The file sits in its dominant class's folder, which is its own class's: the image
        # a variant is made from keeps at least half.
        assert own["weight"] >= 0.5
        assert r["label"] == dominant_label(r["soft_label"], labels[0]) == labels[0]
        assert Path(r["path"]).parent.name == r["label"]
        a, b = source(own["path"]), source(partner["path"])
        pixels = np.asarray(Image.open(out / r["path"]))
        entry = r["params"][-1]
        assert entry["weight"] == own["weight"] and entry["partner"] == partner["path"]
        if entry["transform"] == "MixUp":
            blend = own["weight"] * a.astype(float) + partner["weight"] * b.astype(float)
            assert np.abs(pixels - blend).max() <= 0.5 + 1e-6
        else:
            x0, y0, x1, y1 = entry["box"]
            inside = np.zeros(a.shape[:2], bool)
            inside[y0:y1, x0:x1] = True
            assert np.array_equal(pixels[inside], b[inside])
            assert np.array_equal(pixels[~inside], a[~inside])
            assert partner["weight"] == pytest.approx(inside.mean(), abs=1e-12)
    # metadata.csv: one probability column per class, equal to the manifest's soft label.
    classes = header["source"]["classes"]
    by_path = {r["path"]: r for r in records}
    for split in ("train", "validation", "test"):
        with (out / split / "metadata.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["file_name", "label", *(f"p_{c}" for c in classes)]
        for row in rows:
            record = by_path[f"{split}/{row['file_name']}"]
            probs = [float(row[f"p_{c}"]) for c in classes]
            assert sum(probs) == pytest.approx(1.0, abs=1e-12)
            expected = record.get("soft_label") or {record["label"]: 1.0}
            assert probs == [expected.get(c, 0.0) for c in classes]
            assert row["label"] == record["label"]


def test_other_class_partners_and_worker_count_determinism(tmp_path: Path) -> None:
    recipe = write(tmp_path, "mix.yaml", MIX_WITH_TRANSFORMS)
    trees = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        expand(
            DIGITS,
            out,
            ExpandOptions(times=4, recipe=str(recipe), seed=9, workers=workers, balance=True),
        )
        trees.append(file_tree(out))
    assert trees[0] == trees[1]
    again = expand(
        DIGITS,
        tmp_path / "out1",
        ExpandOptions(times=4, recipe=str(recipe), seed=9, workers=1, balance=True),
    )
    assert again.written == 0 and again.removed == 0  # mixed names are stable: rerun is a no-op
    records = manifest(tmp_path / "out1")
    mixups = [r for r in records if r["params"] and r["params"][-1]["transform"] == "MixUp"]
    cutmixes = [r for r in records if r["params"] and r["params"][-1]["transform"] == "CutMix"]
    assert mixups and cutmixes
    label_of = {
        h["path"]: h["label"]
        for h in json.loads((tmp_path / "out1" / "augment.json").read_text())["holdout"]
    }
    for r in mixups:
        own, partner = r["sources"]
        assert label_of[own["path"]] != label_of[partner["path"]]  # other_class: true
    # The per-class policy holds for both images of a mix: no flip touches a 6 or a 9.
    for r in records:
        if r["variant"] == 0:
            continue
        own_label = label_of[r["sources"][0]["path"]]
        applied = [p["transform"] for p in r["params"]]
        if own_label in ("6", "9"):
            assert "HorizontalFlip" not in applied
        if len(r["sources"]) == 2 and label_of[r["sources"][1]["path"]] in ("6", "9"):
            assert "HorizontalFlip" not in [
                p["transform"] for p in r["params"][-1]["partner_params"]
            ]


def test_same_class_mix_keeps_a_hard_label(tmp_path: Path) -> None:
    recipe = write(
        tmp_path,
        "mix.yaml",
        MIX_ONLY.replace("p: 0.5, alpha: 0.4", "p: 1.0, alpha: 0.4").replace(
            "  - CutMix: {p: 0.5, alpha: 1.0}\n", ""
        ),
    )
    src = tmp_path / "src"
    (src / "brick").mkdir(parents=True)
    for p in sorted((TEXTURES / "brick").iterdir())[:3]:
        (src / "brick" / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    expand(src, out, ExpandOptions(times=3, recipe=str(recipe), val=0, test=0, workers=1))
    mixed = [r for r in manifest(out) if len(r["sources"]) == 2]
    assert len(mixed) == 6
    assert all(r["soft_label"] == {"brick": 1.0} and r["label"] == "brick" for r in mixed)


def test_unreadable_partner_is_reported_not_a_crash(tmp_path: Path) -> None:
    recipe = write(tmp_path, "mix.yaml", MIX_ONLY)
    src = tmp_path / "src"
    for label in ("brick", "grass"):
        (src / label).mkdir(parents=True)
        for p in sorted((TEXTURES / label).iterdir())[:3]:
            (src / label / p.name).write_bytes(p.read_bytes())
    # A truncated JPEG: its header reads (ingest accepts it), its pixels do not decode.
    whole = (TEXTURES / "grass" / "grass_09.jpg").read_bytes()
    (src / "grass" / "broken.jpg").write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "out"
    summary = expand(src, out, ExpandOptions(times=4, recipe=str(recipe), val=0, test=0, workers=1))
    assert [r.path for r in summary.rejected] == ["grass/broken.jpg"]
    # Its own 4 outputs are missing, and so is at least one variant it was the partner of.
    assert sum(summary.counts["train"].values()) < 6 * 4
    assert all(s["path"] != "grass/broken.jpg" for r in manifest(out) for s in r["sources"])
