"""Real consumers load the output as it is: Hugging Face `datasets` imagefolder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from augment.expand import ExpandSummary


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
