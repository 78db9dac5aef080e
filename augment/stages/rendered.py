"""What the worker makes of a job before it is written: the output's pixels with what its
manifest record says about how they were made, and that record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from augment.imaging.digests import sha256_bytes
from augment.stages.manifest import Record
from augment.stages.plan import OutputJob


@dataclass
class Rendered:
    """One output's pixels and what its manifest record says about how they were made."""

    job: OutputJob
    label: str
    pixels: np.ndarray
    params: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    soft_label: dict[str, float] | None = None
    annotation: dict[str, Any] | None = None  # annotated sets: the record's `annotation`
    mask: bytes | None = None  # segmentation sets: the encoded mask, written beside it


def output_record(item: Rendered, split: str, recipe: str, encoded: bytes) -> Record:
    """An output's manifest record (`recipe`: the recipe's fingerprint)."""
    record: Record = {
        "path": item.job.path,
        "split": split,
        "label": item.label,
        "sha256": sha256_bytes(encoded),
        "size": len(encoded),
        "sources": item.sources,
        "variant": item.job.variant,
        "seed": item.job.seed,
        "recipe": recipe,
        "params": item.params,
    }
    if item.soft_label is not None:
        record["soft_label"] = item.soft_label
    if item.annotation is not None:
        record["annotation"] = item.annotation
    return record
