"""Planning: turning held-out originals and a recipe into jobs that are pure data.

A job says which file to make (its name), from which original, as which variant, with which
seed. Names and seeds derive only from content and settings, never from order, time or
machine, so any worker count produces the same bytes under the same names:

- variant 0 (the preprocessed original, in every split) is keyed by
  (source sha256, preprocess fingerprint): an augment-only recipe change keeps it;
- variant v >= 1 (train only) is keyed by (source sha256, recipe fingerprint, seed, v),
  and seeded by (seed, source sha256, v).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from augment.imageio import same_format
from augment.ingest import Original, Rejected

KEY_LENGTH = 12  # hex digits: 48 bits, no collision in any realistic dataset
_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')
_MAX_STEM_BYTES = 120


@dataclass(frozen=True)
class OutputJob:
    path: str  # relative to OUT, POSIX
    variant: int
    seed: int  # 0 for variant 0, which draws nothing


@dataclass(frozen=True)
class SourceTask:
    """All outputs of one original: the worker decodes and preprocesses it once for them."""

    original: Original
    split: str
    outputs: tuple[OutputJob, ...]


@dataclass(frozen=True)
class Fingerprints:
    preprocess: str
    recipe: str


def safe_name(text: str) -> str:
    """A file-name-safe version of a stem or label; keeps unicode, drops separators."""
    cleaned = _UNSAFE.sub("_", text).strip().strip(".") or "_"
    encoded = cleaned.encode()
    if len(encoded) > _MAX_STEM_BYTES:
        cleaned = encoded[:_MAX_STEM_BYTES].decode(errors="ignore")
    return cleaned


def _hash(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def output_key(source_sha: str, fingerprints: Fingerprints, seed: int, variant: int) -> str:
    if variant == 0:
        return _hash("original", source_sha, fingerprints.preprocess)[:KEY_LENGTH]
    return _hash("variant", source_sha, fingerprints.recipe, seed, variant)[:KEY_LENGTH]


def job_seed(seed: int, source_sha: str, variant: int) -> int:
    if variant == 0:
        return 0
    return int(_hash("seed", seed, source_sha, variant)[:16], 16)


def output_extension(original: Original, output_format: str) -> str:
    return same_format(original.format) if output_format == "same" else output_format


def plan_tasks(
    originals: Sequence[Original],
    split_of: Mapping[str, str],
    variants_per_class: Mapping[str, Sequence[int]],
    fingerprints: Fingerprints,
    seed: int,
    output_format: str,
) -> tuple[list[SourceTask], list[Rejected]]:
    """One task per original; train originals get `variants_per_class[label]`, others [0]."""
    tasks: list[SourceTask] = []
    rejected: list[Rejected] = []
    planned: dict[str, str] = {}
    for original in originals:
        split = split_of[original.path]
        variants = variants_per_class[original.label] if split == "train" else (0,)
        stem = safe_name(Path(original.path).stem)
        folder = f"{split}/{safe_name(original.label)}"
        ext = output_extension(original, output_format)
        jobs = tuple(
            OutputJob(
                path=f"{folder}/{stem}__{output_key(original.sha256, fingerprints, seed, v)}.{ext}",
                variant=v,
                seed=job_seed(seed, original.sha256, v),
            )
            for v in variants
        )
        clash = next((planned[j.path] for j in jobs if j.path in planned), None)
        if clash is not None:
            # Same bytes, same class, same stem: its outputs would be the very same files.
            rejected.append(Rejected(original.path, f"exact duplicate of {clash}"))
            continue
        planned.update((j.path, original.path) for j in jobs)
        tasks.append(SourceTask(original=original, split=split, outputs=jobs))
    return tasks, rejected


def shard_tasks(tasks: Sequence[SourceTask], outputs_per_shard: int) -> Iterator[list[SourceTask]]:
    """Group tasks into shards of about `outputs_per_shard` outputs: the unit of work,
    of pickling, and of resume."""
    shard: list[SourceTask] = []
    size = 0
    for task in tasks:
        shard.append(task)
        size += len(task.outputs)
        if size >= outputs_per_shard:
            yield shard
            shard, size = [], 0
    if shard:
        yield shard
