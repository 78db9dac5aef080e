"""`augment expand` end to end on the real sample data: layout, holdout invariants,
the manifest, and byte-identical output whatever the worker count."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augment.errors import OutputError
from augment.expand import expand
from augment.model import ExpandOptions, ExpandSummary
from tests.helpers import DIGITS, TEXTURES, augment_command, file_tree


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_layout_and_counts(expanded: tuple[Path, ExpandSummary]) -> None:
    out, summary = expanded
    header = json.loads((out / "augment.json").read_text())
    records = manifest(out)
    train_originals = [h for h in header["holdout"] if h["split"] == "train"]
    assert len(header["holdout"]) == 50
    # Exactly N images per train original, and held-out originals appear once each.
    assert Counter(r["split"] for r in records) == {
        "train": 4 * len(train_originals),
        "validation": summary.originals["validation"],
        "test": summary.originals["test"],
    }
    for split in ("train", "validation", "test"):
        files = {
            p.relative_to(out).as_posix()
            for p in (out / split).rglob("*.*")
            if p.name != "metadata.csv"
        }
        assert files == {r["path"] for r in records if r["split"] == split}
        for path in files:
            assert Path(path).parent.name in {"brick", "grass", "gravel", "histology", "deep_space"}
    # Every class is present in every split (10 per class: 2 validation, 1 test).
    for split in ("validation", "test"):
        assert {r["label"] for r in records if r["split"] == split} == set(
            header["source"]["classes"]
        )


def test_holdout_invariants(expanded: tuple[Path, ExpandSummary]) -> None:
    out, _ = expanded
    records = manifest(out)
    held_out = {s["sha256"] for r in records if r["split"] != "train" for s in r["sources"]}
    for r in records:
        if r["split"] == "train":
            assert not {s["sha256"] for s in r["sources"]} & held_out
        else:
            assert r["variant"] == 0 and len(r["sources"]) == 1
    per_source = Counter(r["sources"][0]["path"] for r in records if r["split"] == "train")
    assert set(per_source.values()) == {4}
    variants = {
        src: sorted(r["variant"] for r in records if r["sources"][0]["path"] == src)
        for src in per_source
    }
    assert all(v == [0, 1, 2, 3] for v in variants.values())


def test_manifest_hashes_and_metadata(expanded: tuple[Path, ExpandSummary]) -> None:
    out, _ = expanded
    records = manifest(out)
    for r in records:
        data = (out / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        assert r["size"] == len(data)
        src = TEXTURES / r["sources"][0]["path"]
        assert hashlib.sha256(src.read_bytes()).hexdigest() == r["sources"][0]["sha256"]
        assert r["sources"][0]["weight"] == 1.0
        # <stem>_nohash_<key>.<ext>: the stem of the source, a 12-hex-digit key.
        stem, key = Path(r["path"]).stem.rsplit("_nohash_", 1)
        assert stem == Path(r["sources"][0]["path"]).stem and len(key) == 12
        with Image.open(out / r["path"]) as img:
            assert img.size == (64, 48) and img.mode == "RGB"
    # No metadata.csv without soft labels: Hugging Face then reads the class folders.
    for split in ("train", "validation", "test"):
        assert not (out / split / "metadata.csv").exists()
    assert json.loads((out / "classes.json").read_text()) == sorted({r["label"] for r in records})


def test_variants_differ_from_original_and_record_params(
    expanded: tuple[Path, ExpandSummary],
) -> None:
    out, _ = expanded
    records = manifest(out)
    by_source: dict[str, dict[int, dict]] = {}
    for r in records:
        if r["split"] == "train":
            by_source.setdefault(r["sources"][0]["path"], {})[r["variant"]] = r
    changed = 0
    for variants in by_source.values():
        assert variants[0]["params"] == [] and variants[0]["seed"] == 0
        original = np.asarray(Image.open(out / variants[0]["path"]))
        for v in (1, 2, 3):
            pixels = np.asarray(Image.open(out / variants[v]["path"]))
            changed += int(not np.array_equal(pixels, original))
            names = [p["transform"] for p in variants[v]["params"]]
            assert set(names) <= {
                "HorizontalFlip",
                "Affine",
                "RandomBrightnessContrast",
                "FastGaussianNoise",
                "CoarseDropout",
            }
    assert changed >= 0.9 * 3 * len(by_source)


def test_worker_count_gives_byte_identical_output(tmp_path: Path, small_recipe: Path) -> None:
    trees = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        expand(TEXTURES, out, ExpandOptions(times=3, recipe=str(small_recipe), workers=workers))
        trees.append(file_tree(out))
    assert trees[0].keys() == trees[1].keys()
    assert trees[0] == trees[1]
    assert "manifest.jsonl" in trees[0] and "augment.json" in trees[0]


def test_seed_changes_variants_not_originals(tmp_path: Path, small_recipe: Path) -> None:
    a = expand(
        DIGITS,
        tmp_path / "a",
        ExpandOptions(times=2, recipe=str(small_recipe), seed=1, val=0, test=0, workers=1),
    )
    b = expand(
        DIGITS,
        tmp_path / "b",
        ExpandOptions(times=2, recipe=str(small_recipe), seed=2, val=0, test=0, workers=1),
    )
    assert a.total == b.total == 120
    ta, tb = file_tree(tmp_path / "a"), file_tree(tmp_path / "b")
    va = {p: d for p, d in ta.items() if p.startswith("train/") and p.endswith(".png")}
    vb = {p: d for p, d in tb.items() if p.startswith("train/") and p.endswith(".png")}
    common = va.keys() & vb.keys()
    assert len(common) == 60  # the preprocessed originals keep their names and bytes
    assert all(va[p] == vb[p] for p in common)


def test_no_originals_makes_all_n_augmented(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    expand(
        DIGITS, out, ExpandOptions(times=3, no_originals=True, recipe=str(small_recipe), workers=1)
    )
    train = [r for r in manifest(out) if r["split"] == "train"]
    assert train and all(r["variant"] in (1, 2, 3) for r in train)
    assert len(train) == 3 * len({r["sources"][0]["path"] for r in train})


def test_default_recipe_on_sample_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = expand(TEXTURES, out, ExpandOptions(times=2, workers=2))
    assert (
        summary.total
        == 2 * summary.originals["train"]
        + summary.originals["validation"]
        + summary.originals["test"]
    )
    for r in manifest(out):
        with Image.open(out / r["path"]) as img:
            assert img.size == (224, 224) and img.format == "JPEG"


def test_output_format_png(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    expand(
        TEXTURES,
        out,
        ExpandOptions(times=1, recipe=str(small_recipe), output_format="png", workers=1),
    )
    paths = [out / r["path"] for r in manifest(out)]
    assert paths and all(p.suffix == ".png" for p in paths)
    with Image.open(paths[0]) as img:
        assert img.format == "PNG"


def test_input_is_never_modified(tmp_path: Path, small_recipe: Path) -> None:
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in TEXTURES.rglob("*") if p.is_file()
    }
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    expand(TEXTURES, tmp_path / "out", ExpandOptions(times=2, recipe=str(small_recipe), workers=2))
    after = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in TEXTURES.rglob("*") if p.is_file()
    }
    assert before == after
    assert mtimes == {p: p.stat().st_mtime_ns for p in before}


@pytest.mark.parametrize("where", ["same", "inside", "containing"])
def test_out_overlapping_src_is_refused(textures_copy: Path, where: str) -> None:
    out = {
        "same": textures_copy,
        "inside": textures_copy / "brick" / "out",
        "containing": textures_copy.parent,
    }[where]
    with pytest.raises(OutputError):
        expand(textures_copy, out, ExpandOptions(times=2, workers=1))


def test_foreign_non_empty_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not an augment output"):
        expand(TEXTURES, out, ExpandOptions(times=2, workers=1))
    assert (out / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_cli_end_to_end_real_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        augment_command(
            "expand",
            str(DIGITS),
            str(out),
            "--times",
            "3",
            "--recipe",
            "no-flip",
            "-j",
            "2",
            "--seed",
            "5",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "files written" in result.stdout
    records = manifest(out)
    assert len(records) == 3 * sum(
        1 for r in records if r["split"] == "train" and r["variant"] == 0
    ) + sum(1 for r in records if r["split"] != "train")
    with Image.open(out / records[0]["path"]) as img:
        assert img.size == (32, 32)


def test_moving_the_dataset_keeps_the_split(tmp_path: Path, small_recipe: Path) -> None:
    a, b = tmp_path / "here" / "digits", tmp_path / "elsewhere" / "deep" / "digits"
    shutil.copytree(DIGITS, a)
    shutil.copytree(DIGITS, b)
    options = ExpandOptions(times=1, recipe=str(small_recipe), workers=1)
    expand(a, tmp_path / "out_a", options)
    expand(b, tmp_path / "out_b", options)
    assert file_tree(tmp_path / "out_a") == file_tree(tmp_path / "out_b")
