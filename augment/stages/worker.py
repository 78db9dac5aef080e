"""The worker: turns a shard of jobs into files on disk and their manifest records.

It does not know which executor runs it. Each source is read and decoded once, preprocessed
once, and then encoded once per output (the original and every variant). A mixing partner is
decoded once per shard. `render` makes the pixels and `run` writes them, so `augment
preview` shows exactly what `expand` writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import albumentations as A
import numpy as np

from augment.annotations.masks import decode_mask, objects_of
from augment.annotations.output import annotation_record, output_mask
from augment.defaults import DEFAULT_MAX_PIXELS
from augment.errors import UnreadableImage
from augment.files import write_atomic
from augment.imaging.codec import decode, encode
from augment.imaging.digests import sha256_bytes
from augment.model import LabeledObject, Original, Rejected
from augment.recipe.annotated import (
    augment_objects,
    build_annotated_pipeline,
    for_classes,
    preprocess_mask,
    preprocess_objects,
    removed_for_classes,
)
from augment.recipe.applied import applied_params
from augment.recipe.build import Recipe, seed_pipeline
from augment.recipe.fused import FusedPipeline, fused_pipeline
from augment.recipe.mosaic import fit_size
from augment.recipe.policy import for_class
from augment.recipe.preprocess import apply_preprocess, size_problem
from augment.stages.manifest import Record, dumps, write_journal
from augment.stages.mixed import Image, combine, mix_pixels
from augment.stages.plan import Fingerprints, OutputJob, PlannedMix, SourceTask, output_extension
from augment.stages.rendered import Rendered, output_record
from augment.writers.shards import ShardLayout


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
    # Annotated sets: the input's format ("yolo", "coco") and class names, in id order.
    annotations: str | None = None
    names: tuple[str, ...] = ()
    layout: ShardLayout | None = None  # --output-format webdataset|parquet: shards


@dataclass
class ShardResult:
    records: list[Record] = field(default_factory=list)  # none when shards hold them
    lines: list[str] = field(default_factory=list)  # the records as journaled (JSON), once
    rejected: list[Rejected] = field(default_factory=list)
    samples: int = 0  # outputs written into shards
    unmade: int = 0  # planned outputs left out for the rejections


def shard_id(shard: list[SourceTask]) -> str:
    paths = "\n".join(job.path for task in shard for job in task.outputs)
    return hashlib.sha256(paths.encode()).hexdigest()[:20]


_CANNOT_APPLY = "the recipe cannot be applied to this image"


class _Unusable(Exception):
    """`retry`: the cause may pass (the file could not be read, changed meanwhile, memory
    ran out), so the next run tries again. Otherwise it is a verdict on the bytes and the
    recipe, which a run made from the same inputs reaches again."""

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry


class SourceProblem(_Unusable):
    """An original cannot be used: unreadable, undecodable, changed since ingest, or the
    recipe raises on its pixels. The source is rejected with this reason."""


class PartnerProblem(_Unusable):
    """A mixing partner cannot be used: only the mixed output that needed it is left out."""


# An annotated source preprocessed: pixels, objects, objects dropped per class, mask.
_Prepared = tuple[np.ndarray, list[LabeledObject], Counter[str], np.ndarray | None]
# A copy-paste partner preprocessed: pixels, the size it was decoded at, mask.
_Pasteable = tuple[np.ndarray, tuple[int, int], np.ndarray | None]


class Worker:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        # One pipeline per class, with the transforms its policy forbids taken out; classes
        # that may use the same transforms share one (building one costs ~1 ms, ~2 outputs'
        # bookkeeping; a seeded call does not depend on the calls before it).
        self._pipelines: dict[str, tuple[A.Compose | FusedPipeline, list[str]]] = {}
        self._built: dict[str, A.Compose | FusedPipeline] = {}  # by the transforms' spec
        self._partners: dict[str, np.ndarray | SourceProblem] = {}  # within one shard
        self._tiles: dict[str, _Prepared | SourceProblem] = {}  # annotated partners, alike
        self._pastes: dict[str, _Pasteable | SourceProblem] = {}  # copy-paste partners
        # Annotated sets: a pipeline per set of classes an image holds (see recipe/annotated).
        self._annotated: dict[str, A.Compose] = {}

    def run(self, shard: list[SourceTask]) -> ShardResult:
        result = ShardResult()
        self._partners.clear()
        for task in shard:
            self._run_task(task, result)
        self._partners.clear()
        self._tiles.clear()
        self._pastes.clear()
        # Encoded once: the journal's lines are the rows of the run's manifest too.
        result.lines = [dumps(record) for record in result.records]
        write_journal(self.ctx.out, shard_id(shard), result.lines)
        return result

    def _run_task(self, task: SourceTask, result: ShardResult) -> None:
        ctx, original = self.ctx, task.original
        fmt = output_extension(original, ctx.output_format)
        first = len(result.records)
        for item in self.render(task):
            if isinstance(item, Rejected):
                result.rejected.append(item)
                if item.path == original.path:
                    # All of a source's outputs or none: what was already written for it
                    # goes, so no output is left without its siblings or its record.
                    self._take_back(result.records[first:])
                    del result.records[first:]
                continue
            encoded = encode(item.pixels, fmt, ctx.quality)  # type: ignore[arg-type]
            record = output_record(item, task.split, ctx.fingerprints.recipe, encoded)
            result.records.append(self._store(record, item, encoded))
        result.unmade += len(task.outputs) - (len(result.records) - first)

    def _store(self, record: Record, item: Rendered, encoded: bytes) -> Record:
        """Write one output (as a file: a shard worker adds it to its shard)."""
        write_atomic(os.path.join(self.ctx.out, item.job.path), encoded)  # no pathlib: hot
        if item.mask is not None and item.annotation is not None:
            write_atomic(self.ctx.out / item.annotation["file"], item.mask)
        return record

    def _take_back(self, records: list[Record]) -> None:
        for made in records:
            with contextlib.suppress(OSError):
                (self.ctx.out / made["path"]).unlink()

    def render(self, task: SourceTask) -> Iterator[Rendered | Rejected]:
        """The pixels of every output of a task, in job order; `augment preview` shows these
        very pixels. A source that cannot be used yields one Rejected instead."""
        original = task.original
        if original.annotation is not None:
            yield from self._render_annotated(task)
            return
        try:
            prepared = self.prepare(original)
            own = {"path": original.path, "sha256": original.sha256, "weight": 1.0}
            for job in task.outputs:
                if job.variant == 0:
                    yield Rendered(job, original.label, prepared, [], [own])
                elif job.mix is None:
                    pixels, params = self.augment(prepared, original.label, job.seed)
                    yield Rendered(job, original.label, pixels, params, [own])
                else:
                    try:
                        yield self._mixed(job, job.mix, original, prepared)
                    except PartnerProblem as exc:
                        yield Rejected(job.mix.partner.path, str(exc), exc.retry)
        except SourceProblem as exc:
            yield Rejected(original.path, str(exc), exc.retry)

    def _render_annotated(self, task: SourceTask) -> Iterator[Rendered | Rejected]:
        """`render` for an annotated source: its objects move with the pixels."""
        ctx, original = self.ctx, task.original
        assert original.annotation is not None and ctx.annotations is not None
        try:
            prepared, objects, dropped, mask = self._prepare_annotated(original)
            own = {"path": original.path, "sha256": original.sha256, "weight": 1.0}
            for job in task.outputs:
                if job.mix is not None:  # a mix of annotated images (stages/mixed.py)
                    made = (prepared, objects, dropped, mask)
                    yield self._mixed_annotated(job, job.mix, original, made)
                    continue
                pixels, kept, lost, warped = prepared, objects, dropped, mask
                params: list[dict[str, Any]] = []
                if job.variant:
                    pixels, kept, params, more, warped = self.augment_annotated(
                        prepared, objects, job.seed, mask
                    )
                    lost = dropped + more
                size = (pixels.shape[1], pixels.shape[0])
                encoded = output_mask(ctx.annotations, ctx.names, kept, size, warped)
                record = annotation_record(
                    ctx.annotations, ctx.names, job.path, kept, size, lost, encoded
                )
                yield Rendered(job, original.label, pixels, params, [own], None, record, encoded)
        except SourceProblem as exc:
            yield Rejected(original.path, str(exc), exc.retry)

    def _prepare_annotated(self, original: Original) -> _Prepared:
        """An annotated source read, preprocessed, its objects (and mask) moved alike."""
        assert original.annotation is not None
        prepared, decoded_size = self.prepare_sized(original)
        mask = self._source_mask(original.annotation.mask, decoded_size)
        objects, dropped = preprocess_objects(
            original.annotation.objects,
            (original.width, original.height),
            decoded_size,
            self.ctx.recipe.preprocess,
        )
        if mask is not None:  # a mask's objects are its classes' extents on it
            objects = objects_of(mask, self.ctx.names or None)
            dropped = Counter(o.label for o in original.annotation.objects) - Counter(
                o.label for o in objects
            )
        return prepared, objects, dropped, mask

    def _mixed_annotated(
        self, job: OutputJob, mix: PlannedMix, original: Original, prepared: _Prepared
    ) -> Rendered | Rejected:
        """A mosaic, copy-paste, MixUp or CutMix (stages/mixed.py): each image augmented on
        its own, with its classes' policy; a copy-paste partner only preprocessed (the
        paste's own jitter moves its instances)."""
        ctx = self.ctx
        assert ctx.annotations is not None and ctx.recipe.preprocess.size is not None
        images = []
        for source, seed in [(original, job.seed), *mix.partners]:
            try:  # the image itself rejects its source; a partner, this output
                if mix.kind == "copypaste" and source is not original:
                    pixels, decoded_size, ids = self._paste_partner(source)
                    images.append(Image(source, pixels, [], ids, [], Counter(), decoded_size))
                    continue
                tile = prepared if source is original else self._prepared_tile(source)
                augmented = self.augment_annotated(tile[0], tile[1], seed, tile[3])
            except _Unusable as exc:
                return Rejected(source.path, str(exc), exc.retry)
            pixels, kept, params, more, mask = augmented
            images.append(Image(source, pixels, kept, mask, params, tile[2] + more))
        made = combine(mix, images, ctx.recipe.preprocess, ctx.names)
        size = ctx.recipe.preprocess.size
        encoded = output_mask(ctx.annotations, ctx.names, made.objects, size, made.mask)
        record = annotation_record(
            ctx.annotations, ctx.names, job.path, made.objects, size, made.lost, encoded
        )
        return Rendered(
            job, original.label, made.pixels, made.params, made.sources, None, record, encoded
        )

    def _paste_partner(self, original: Original) -> _Pasteable:
        """A copy-paste partner preprocessed, once per shard (its problem a PartnerProblem)."""
        return _prepared_once(self._pastes, original, self._pasteable)

    def _pasteable(self, original: Original) -> _Pasteable:
        assert original.annotation is not None
        pixels, decoded_size = self.prepare_sized(original)
        return pixels, decoded_size, self._source_mask(original.annotation.mask, decoded_size)

    def _prepared_tile(self, original: Original) -> _Prepared:
        """An annotated partner, prepared once per shard; its problem is a PartnerProblem."""
        return _prepared_once(self._tiles, original, self._prepare_annotated)

    def _source_mask(self, rel: str | None, decoded_size: tuple[int, int]) -> np.ndarray | None:
        """A segmentation source's class-id mask, preprocessed as its image was."""
        if rel is None:
            return None
        try:
            ids = decode_mask(self.source_bytes(rel))
        except (OSError, ValueError) as exc:
            raise SourceProblem(f"cannot read its mask {rel}: {exc}", retry=True) from exc
        return preprocess_mask(ids, decoded_size, self.ctx.recipe.preprocess)

    def augment_annotated(
        self,
        prepared: np.ndarray,
        objects: list[LabeledObject],
        seed: int,
        mask: np.ndarray | None = None,
    ) -> tuple[
        np.ndarray, list[LabeledObject], list[dict[str, Any]], Counter[str], np.ndarray | None
    ]:
        """The recipe's transforms on an image and its objects (and mask), as the classes
        on it may use them (a policy must allow every one)."""
        labels = tuple(sorted({o.label for o in objects}))
        removed = removed_for_classes(self.ctx.recipe.augment, labels)
        # Keyed by the transforms the classes may use, not by the classes: without a
        # policy, one pipeline serves every image (building one costs more than applying it).
        outlines = any(o.polygon for o in objects)
        allowed = for_classes(self.ctx.recipe.augment, labels, root=True)
        key = json.dumps([allowed, outlines], sort_keys=True)
        if key not in self._annotated:
            self._annotated[key] = build_annotated_pipeline(self.ctx.recipe, labels, outlines)
        pipeline = self._annotated[key]
        seed_pipeline(pipeline, seed)
        try:
            result, kept, dropped = augment_objects(pipeline, prepared.copy(), objects, mask)
        except Exception as exc:
            raise SourceProblem(
                f"{_CANNOT_APPLY}: {exc}", retry=isinstance(exc, MemoryError)
            ) from exc
        pixels = np.ascontiguousarray(result["image"])
        params = applied_params(result.get("applied_transforms", []))
        if removed:
            params.insert(
                0, {"transform": "ClassPolicy", "labels": list(labels), "removed": removed}
            )
        warped = None if mask is None else np.ascontiguousarray(result["mask"])
        if warped is not None:  # a mask's objects are its classes' extents, once warped
            kept = objects_of(warped, self.ctx.names or None)
            dropped = Counter(o.label for o in objects) - Counter(o.label for o in kept)
        return pixels, kept, params, dropped, warped

    def source_bytes(self, rel: str) -> bytes:
        """A source file's bytes, `rel` relative to SRC."""
        return (self.ctx.src_root / rel).read_bytes()

    def prepare(self, original: Original) -> np.ndarray:
        """Read, check, decode and preprocess one original."""
        return self.prepare_sized(original)[0]

    def prepare_sized(self, original: Original) -> tuple[np.ndarray, tuple[int, int]]:
        """`prepare`, and the (width, height) the source was decoded at (a JPEG may be
        decoded reduced, see codec.decode): what annotations are scaled from."""
        ctx = self.ctx
        try:
            data = self.source_bytes(original.path)
        except OSError as exc:
            raise SourceProblem(f"cannot read: {exc.strerror or exc}", retry=True) from exc
        if sha256_bytes(data) != original.sha256:
            raise SourceProblem("file changed while the run was going on", retry=True)
        try:
            decoded = decode(
                data,
                ctx.recipe.background,
                ctx.max_pixels,
                needed=ctx.recipe.preprocess.needed_source_size,
            )
        except UnreadableImage as exc:
            raise SourceProblem(str(exc)) from exc
        # albumentations and OpenCV raise assorted types when a step does not fit an image
        # (a crop or kernel larger than it): one image's problem, not the run's.
        size = (decoded.pixels.shape[1], decoded.pixels.shape[0])
        try:
            prepared = apply_preprocess(decoded.pixels, ctx.recipe.preprocess)
        except Exception as exc:
            raise SourceProblem(
                f"{_CANNOT_APPLY}: preprocess: {exc}", retry=isinstance(exc, MemoryError)
            ) from exc
        fmt = output_extension(original, ctx.output_format)  # a source kept at its own size
        if problem := size_problem(prepared.shape[1], prepared.shape[0], fmt, ctx.max_pixels):
            raise SourceProblem(f"cannot be written as {fmt}: {problem} (set preprocess.size)")
        return prepared, size

    def pipeline(self, label: str) -> tuple[A.Compose | FusedPipeline, list[str]]:
        """Class `label`'s pipeline and the names of the transforms its policy removed."""
        if label not in self._pipelines:
            recipe = self.ctx.recipe
            spec = json.dumps(for_class(recipe.augment, label, root=True), default=repr)
            if spec not in self._built:
                self._built[spec] = fused_pipeline(recipe, label)
            self._pipelines[label] = (self._built[spec], recipe.removed_for(label))
        return self._pipelines[label]

    def augment(
        self, prepared: np.ndarray, label: str, seed: int
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The recipe's transforms, as class `label` may use them, seeded by `seed`."""
        pipeline, removed = self.pipeline(label)
        seed_pipeline(pipeline, seed)
        try:  # as in `prepare`: a transform that does not fit this image rejects the source
            augmented = pipeline(image=prepared.copy())
        except Exception as exc:
            raise SourceProblem(
                f"{_CANNOT_APPLY}: {exc}", retry=isinstance(exc, MemoryError)
            ) from exc
        pixels = np.ascontiguousarray(augmented["image"])
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise SourceProblem(
                f"{_CANNOT_APPLY}: it makes {pixels.dtype} {pixels.shape}, not 8-bit RGB "
                "(a transform such as ToFloat, Normalize or ToGray with one channel)"
            )
        params = applied_params(augmented.get("applied_transforms", []))
        if removed:  # the policy is part of how the image was made: say so in the record
            params.insert(0, {"transform": "ClassPolicy", "label": label, "removed": removed})
        return pixels, params

    def _partner(self, partner: Original) -> np.ndarray:
        return _prepared_once(self._partners, partner, self.prepare)

    def _mixed(
        self, job: OutputJob, mix: PlannedMix, original: Original, prepared: np.ndarray
    ) -> Rendered:
        """Both images augmented on their own (each with its class's policy), then mixed."""
        size = self.ctx.recipe.preprocess.size
        assert size is not None, "a recipe with mix has a preprocess size"
        pixels, params = self.augment(prepared, original.label, job.seed)
        try:
            partner_pixels, partner_params = self.augment(
                self._partner(mix.partner), mix.partner.label, mix.partner_seed
            )
        except SourceProblem as exc:
            raise PartnerProblem(str(exc), exc.retry) from exc
        pixels, partner_pixels = fit_size(pixels, size), fit_size(partner_pixels, size)
        mixed, entry, sources = mix_pixels(mix, original, pixels, partner_pixels, partner_params)
        return Rendered(job, mix.label, mixed, [*params, entry], sources, mix.soft_label)


_T = TypeVar("_T")


def _prepared_once(
    cache: dict[str, _T | SourceProblem], partner: Original, prepare: Callable[[Original], _T]
) -> _T:
    """A mixing or mosaic partner, prepared once per shard. Its problem is a PartnerProblem
    with the same reason its own task gives, so the summary lists it once."""
    cached = cache.get(partner.sha256)
    if cached is None:
        try:
            cached = prepare(partner)
        except SourceProblem as exc:
            cached = exc
        cache[partner.sha256] = cached
    if isinstance(cached, SourceProblem):
        raise PartnerProblem(str(cached), cached.retry)
    return cached
