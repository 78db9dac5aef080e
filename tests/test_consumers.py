"""Real consumers load the output as it is: Hugging Face `datasets` imagefolder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from augment.expand import expand
from augment.model import ExpandOptions, ExpandSummary
from tests.helpers import TEXTURES


def test_hugging_face_imagefolder_loads_the_output(expanded: tuple[Path, ExpandSummary]) -> None:
    from datasets import load_dataset

    out, _ = expanded
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    ds = load_dataset("imagefolder", data_dir=str(out))
    assert set(ds) == {"train", "validation", "test"}
    for split in ("train", "validation", "test"):
        expected = Counter(r["label"] for r in records if r["split"] == split)
        assert ds[split].num_rows == sum(expected.values())
        label = ds[split].features["label"]
        names = label.names if hasattr(label, "names") else None
        got = Counter(names[i] if names else i for i in ds[split]["label"])
        assert got == expected
    image = ds["train"][0]["image"]
    assert image.size == (64, 48)


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
