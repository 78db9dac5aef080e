"""Real consumers load the output as it is: Hugging Face `datasets` (imagefolder, and the
folder with its dataset card)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from augment.model import ExpandOptions, ExpandSummary
from augment.run import expand
from tests.helpers import DIGITS, TEXTURES


@pytest.mark.parametrize("how", ["imagefolder", "folder"])
def test_hugging_face_loads_the_output_with_class_labels(
    expanded: tuple[Path, ExpandSummary], how: str, tmp_path: Path
) -> None:
    """`label` is a ClassLabel with every class's name, the same in every split, whether
    loaded as `imagefolder` (the class folders) or as the folder (its dataset card)."""
    from datasets import ClassLabel, load_dataset

    out, _ = expanded
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    classes = sorted({r["label"] for r in records})
    cache = str(tmp_path / "cache")
    if how == "imagefolder":
        ds = load_dataset("imagefolder", data_dir=str(out), cache_dir=cache)
    else:
        ds = load_dataset(str(out), cache_dir=cache)
    assert set(ds) == {"train", "validation", "test"}
    assert json.loads((out / "classes.json").read_text()) == classes
    for split in ("train", "validation", "test"):
        label = ds[split].features["label"]
        assert isinstance(label, ClassLabel) and label.names == classes
        expected = Counter(r["label"] for r in records if r["split"] == split)
        assert Counter(label.names[i] for i in ds[split]["label"]) == expected
    image = ds["train"][0]["image"]
    assert image.size == (64, 48)


@pytest.mark.slow
def test_hugging_face_numbers_a_class_missing_from_a_split_alike(
    tmp_path: Path, small_recipe: Path
) -> None:
    """A class too small to hold out is in train only: its index is the same everywhere."""
    from datasets import load_dataset

    src = tmp_path / "src"
    shutil.copytree(DIGITS, src)
    for extra in sorted((src / "0").iterdir())[2:]:
        extra.unlink()
    out = tmp_path / "out"
    expand(src, out, ExpandOptions(times=2, recipe=str(small_recipe), workers=1))
    for ds in (
        load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "c1")),
        load_dataset(str(out), cache_dir=str(tmp_path / "c2")),
    ):
        for split in ("train", "validation", "test"):
            assert ds[split].features["label"].names == [str(d) for d in range(10)]
        assert "0" not in {
            ds["validation"].features["label"].int2str(i) for i in ds["validation"]["label"]
        }


@pytest.mark.slow
def test_hugging_face_reads_soft_labels(tmp_path: Path) -> None:
    """A mixing run's metadata.csv columns load as float features: the soft label."""
    from datasets import load_dataset

    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "preprocess: {size: [24, 24]}\n"
        "mix:\n"
        "  - MixUp: {p: 0.5, alpha: 0.4, other_class: true}\n"
        "  - CutMix: {p: 0.5, other_class: true}\n"
    )
    out = tmp_path / "out"
    expand(TEXTURES, out, ExpandOptions(times=3, recipe=str(recipe), val=0.2, test=0, workers=1))
    records = {
        r["path"]: r
        for r in (json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines())
    }
    classes = sorted({r["label"] for r in records.values()})
    ds = load_dataset("imagefolder", data_dir=str(out))
    assert set(ds) == {"train", "validation"}
    columns = [f"p_{c}" for c in classes]
    assert set(columns) <= set(ds["train"].column_names)
    soft = np.array([ds["train"][c] for c in columns]).T
    assert np.allclose(soft.sum(axis=1), 1.0)
    assert ((soft > 0) & (soft < 1)).any(axis=1).sum() > 0  # some rows really are mixed
    mixed = sum("soft_label" in r for r in records.values() if r["split"] == "train")
    assert ((soft > 0).sum(axis=1) == 2).sum() == mixed
    validation = np.array([ds["validation"][c] for c in columns]).T
    assert set(np.unique(validation)) == {0.0, 1.0}  # held-out originals: one-hot
    # Loaded as the folder, its dataset card makes `label` a ClassLabel beside the floats.
    card = load_dataset(str(out), cache_dir=str(tmp_path / "card"))
    assert card["train"].features["label"].names == classes
    assert card["train"].features[columns[0]].dtype == "float64"


def _retrain_set(
    file_name: str, validation_percentage: int = 10, testing_percentage: int = 10
) -> str:
    """TF-Hub retrain.py's `which_set`, as it is there: a hash of the base name with
    `_nohash_` and all after it removed."""
    hash_name = re.sub(r"_nohash_.*$", "", file_name)
    hashed = hashlib.sha1(hash_name.encode()).hexdigest()
    most = 2**27 - 1  # MAX_NUM_IMAGES_PER_CLASS
    percentage = (int(hashed, 16) % (most + 1)) * (100.0 / most)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


def test_tf_hub_retrain_keeps_the_variants_of_an_original_in_one_of_its_sets(
    expanded: tuple[Path, ExpandSummary],
) -> None:
    """retrain.py --image_dir out/train splits again by file name: it must not scatter one
    original's variants over its training and validation sets."""
    out, summary = expanded
    sets: dict[str, set[str]] = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["split"] == "train":
            name = Path(r["path"]).name
            sets.setdefault(r["sources"][0]["path"], set()).add(_retrain_set(name))
    assert len(sets) == summary.originals["train"]
    assert all(len(found) == 1 for found in sets.values())
    assert len(set().union(*sets.values())) > 1  # it does split: the originals spread


# Keras needs TensorFlow, too large for the test environment: CI installs it in a virtual
# environment of its own (.ci/run) and names its interpreter here.
KERAS_PYTHON = os.environ.get("AUGMENT_KERAS_PYTHON")
KERAS_SCRIPT = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
found = {"version": keras.__version__}
for split in sys.argv[2:]:
    try:
        ds = keras.utils.image_dataset_from_directory(
            os.path.join(sys.argv[1], split), shuffle=False, batch_size=1000, verbose=False
        )
    except ValueError as exc:
        found[split] = {"error": str(exc)}
        continue
    labels = [int(y) for _, batch in ds for y in batch.numpy()]
    found[split] = {"classes": ds.class_names, "labels": labels, "paths": ds.file_paths}
print(json.dumps(found))
"""


def _keras(out: Path, *splits: str) -> dict:
    assert KERAS_PYTHON is not None
    done = subprocess.run(
        [KERAS_PYTHON, "-c", KERAS_SCRIPT, str(out), *splits],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not KERAS_PYTHON, reason="AUGMENT_KERAS_PYTHON names no Python with Keras")
def test_keras_numbers_the_classes_alike_in_every_split(tmp_path: Path, small_recipe: Path) -> None:
    """Class 0 has 2 originals, so none in validation or test: its empty folders there keep
    every other class's index the one it has in train."""
    src = tmp_path / "src"
    shutil.copytree(DIGITS, src)
    for extra in sorted((src / "0").iterdir())[2:]:
        extra.unlink()
    out = tmp_path / "out"
    expand(src, out, ExpandOptions(times=2, recipe=str(small_recipe), workers=1))
    classes = json.loads((out / "classes.json").read_text())
    found = _keras(out, "train", "validation", "test")
    for split in ("train", "validation", "test"):
        assert found[split]["classes"] == classes
        for label, path in zip(found[split]["labels"], found[split]["paths"], strict=True):
            assert classes[label] == Path(path).parent.name
    assert 0 not in found["validation"]["labels"] and found["validation"]["labels"]
    webp = tmp_path / "webp"
    expand(
        DIGITS,
        webp,
        ExpandOptions(times=2, recipe=str(small_recipe), workers=1, output_format="webp"),
    )
    assert "No images found" in _keras(webp, "train")["train"]["error"]  # what the note warns of
