"""The worker: turns a shard of jobs into files on disk and their manifest records.

It does not know which executor runs it. Each source is read and decoded once, preprocessed
once, and then encoded once per output (the original and every variant).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augment.imageio import DEFAULT_MAX_PIXELS, UnreadableImage, decode, encode, sha256_bytes
from augment.ingest import Rejected
from augment.manifest import Record, write_journal
from augment.plan import Fingerprints, SourceTask, output_extension
from augment.preprocess import apply_preprocess
from augment.recipe import Recipe, seed_pipeline
from augment.writer import write_atomic

# Applied parameters bigger than this (noise maps, masks) are left out of the manifest:
# the seed reproduces them, and they would make the manifest larger than the images.
_MAX_PARAM_ELEMENTS = 16
_DROPPED_PARAMS = frozenset({"shape"})


@dataclass(frozen=True)
class RunContext:
    """What every job of a run shares; sent to each worker process once."""

    src_root: Path
    out: Path
    recipe: Recipe
    fingerprints: Fingerprints
    output_format: str  # "same" | "jpg" | "png" | "webp"
    quality: int
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class ShardResult:
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def shard_id(shard: list[SourceTask]) -> str:
    digest = hashlib.sha256()
    for task in shard:
        for job in task.outputs:
            digest.update(job.path.encode())
    return digest.hexdigest()[:20]


class Worker:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.pipeline = ctx.recipe.build_pipeline()

    def run(self, shard: list[SourceTask]) -> ShardResult:
        result = ShardResult()
        for task in shard:
            self._run_task(task, result)
        write_journal(self.ctx.out, shard_id(shard), result.records)
        return result

    def _run_task(self, task: SourceTask, result: ShardResult) -> None:
        ctx, original = self.ctx, task.original
        try:
            data = (ctx.src_root / original.path).read_bytes()
        except OSError as exc:
            result.rejected.append(Rejected(original.path, f"cannot read: {exc.strerror}"))
            return
        if sha256_bytes(data) != original.sha256:
            result.rejected.append(
                Rejected(original.path, "file changed while the run was going on")
            )
            return
        try:
            decoded = decode(
                data,
                ctx.recipe.background,
                ctx.max_pixels,
                needed=ctx.recipe.preprocess.needed_source_size,
            )
        except UnreadableImage as exc:
            result.rejected.append(Rejected(original.path, str(exc)))
            return
        prepared = apply_preprocess(decoded.pixels, ctx.recipe.preprocess)
        fmt = output_extension(original, ctx.output_format)
        for job in task.outputs:
            if job.variant == 0:
                pixels, params = prepared, []
            else:
                seed_pipeline(self.pipeline, job.seed)
                augmented = self.pipeline(image=prepared.copy())
                pixels = np.ascontiguousarray(augmented["image"])
                params = applied_params(augmented.get("applied_transforms", []))
            encoded = encode(pixels, fmt, ctx.quality)  # type: ignore[arg-type]
            write_atomic(ctx.out / job.path, encoded)
            result.records.append(
                {
                    "path": job.path,
                    "split": task.split,
                    "label": original.label,
                    "sha256": sha256_bytes(encoded),
                    "size": len(encoded),
                    "sources": [{"path": original.path, "sha256": original.sha256, "weight": 1.0}],
                    "variant": job.variant,
                    "seed": job.seed,
                    "recipe": ctx.fingerprints.recipe,
                    "params": params,
                }
            )


def applied_params(applied: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """albumentations' applied parameters, made small and JSON-friendly for the manifest."""
    out: list[dict[str, Any]] = []
    for name, params in applied:
        entry: dict[str, Any] = {"transform": name}
        for key, value in params.items():
            if key in _DROPPED_PARAMS:
                continue
            clean = _jsonable(value)
            if clean is not _TOO_BIG:
                entry[key] = clean
        out.append(entry)
    return out


_TOO_BIG = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= _MAX_PARAM_ELEMENTS else _TOO_BIG
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        items = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _TOO_BIG}
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_PARAM_ELEMENTS:
            return _TOO_BIG
        return [v for v in (_jsonable(v) for v in value) if v is not _TOO_BIG]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
