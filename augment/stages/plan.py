"""Planning: turning held-out originals and a recipe into jobs that are pure data.

A job says which file to make (its name), from which original, as which variant, with which
seed. Names and seeds derive only from content and settings, never from order, time or
machine, so any worker count produces the same bytes under the same names:

- variant 0 (the preprocessed original, in every split) is keyed by
  (source sha256, preprocess fingerprint): an augment-only recipe change keeps it;
- variant v >= 1 (train only) is keyed by (source sha256, recipe fingerprint, seed, v),
  and seeded by (seed, source sha256, v).
- for an annotated source (detection), "source sha256" in a key is `content_id`: the
  source's bytes and its annotation content; its outputs go to OUT/images/<split>/.
- a mixed variant (the recipe's `mix:`) also names its partner: a train original drawn from
  the job's seed, with the partner's sha256 in the key, so a different partner (the train
  split grew) always gives a new name. Whether it mixes, the weight and the CutMix box are
  drawn here too, because the dominant class decides the output's folder. A mosaic (annotated
  sets) names its three partners, drawn alike, and its centre; a copy-paste its partner and the
  partner's annotation. The draws are stages/partners.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from augment.annotations.objects import SPLIT_FOLDERS
from augment.errors import DatasetError
from augment.imaging.codec import same_format
from augment.imaging.digests import sha256_of
from augment.layout import METADATA_NAME
from augment.model import Original, Rejected
from augment.recipe.mixing import MixSpec
from augment.stages.balance import Brought, plan_balance
from augment.stages.holdout import SPLITS
from augment.stages.partners import PartnerPool, PlannedMix, Wanted, added_objects, plan_mix

KEY_LENGTH = 12  # hex digits: 48 bits, no collision in any realistic dataset
# Between an output's stem and its key. TF-Hub's retrain.py (and tools copied from it) split
# a folder by hashing each file name with `_nohash_` and all after it removed: every output
# of one original then hashes alike, and their own split keeps them together.
NAME_SEPARATOR = "_nohash_"
_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]')
_MAX_STEM_BYTES = 120


@dataclass(frozen=True)
class OutputJob:
    path: str  # relative to OUT, POSIX
    variant: int
    seed: int  # 0 for variant 0, which draws nothing
    mix: PlannedMix | None = None


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


def class_folders(classes: Sequence[str]) -> list[str]:
    """`split/class` for every folder the run's outputs go into."""
    return [f"{split}/{safe_name(c)}" for split in SPLITS for c in classes]


def check_class_folders(classes: Sequence[str]) -> None:
    """Each class its own folder in every split: two classes that clean to one folder name
    (`a:b` and `a_b`; two long names alike in their first 120 bytes) would merge into one
    class for every folder loader, and a class folder named `metadata.csv` would take the
    split's labels file's place. Refused before anything is written, naming both."""
    by_folder: dict[str, str] = {}
    for label in classes:
        folder = safe_name(label)
        if folder == METADATA_NAME:
            raise DatasetError(
                f"class {label!r} would be written as the folder <split>/{folder}, where each "
                "split's labels file goes: rename that class folder"
            )
        if folder in by_folder:
            raise DatasetError(
                f"classes {by_folder[folder]!r} and {label!r} would both be written to the "
                f"folder {folder!r} (names are made safe for every file system: separators "
                'and :*?"<>| become _, and at most 120 bytes are kept), merging two classes: '
                "rename one"
            )
        by_folder[folder] = label


def output_key(
    source_sha: str,
    fingerprints: Fingerprints,
    seed: int,
    variant: int,
    partner_sha: str | None = None,
) -> str:
    if variant == 0:
        return sha256_of("original", source_sha, fingerprints.preprocess)[:KEY_LENGTH]
    if partner_sha is not None:
        parts = ("mixed", source_sha, fingerprints.recipe, seed, variant, partner_sha)
        return sha256_of(*parts)[:KEY_LENGTH]
    return sha256_of("variant", source_sha, fingerprints.recipe, seed, variant)[:KEY_LENGTH]


# Bumped when the way annotations are carried (box rules, clipping) changes: a new name. An
# image with multi-part outlines or RLE masks (carried whole since "+shapes") has its own.
ANNOTATION_RULES_VERSION = 1


def content_id(original: Original) -> str:
    """What an output's key is made from: the source's bytes and, for an annotated source,
    its annotation content (so editing one image's labels renames only its outputs). A
    classification source's is its sha256 alone, as it always was."""
    if original.annotation is None:
        return original.sha256
    shaped = any(o.more_polygons or o.rle is not None for o in original.annotation.objects)
    version = f"{ANNOTATION_RULES_VERSION}+shapes" if shaped else ANNOTATION_RULES_VERSION
    return sha256_of("annotated", original.sha256, original.annotation.sha256, version)


def job_seed(seed: int, source_sha: str, variant: int) -> int:
    if variant == 0:
        return 0
    return int(sha256_of("seed", seed, source_sha, variant)[:16], 16)


def output_extension(original: Original, output_format: str) -> str:
    return same_format(original.format) if output_format == "same" else output_format


class Plan:
    """The run's jobs, made one original at a time when asked for: a dataset of any size
    is planned without holding a job per output.

    One task per accepted original; train originals get `variants_per_class[label]` (or,
    with `balance`, as many as make every class's train total equal), others [0]. `mix`
    are the recipe's mix entries and `mix_size` the (width, height) every image has after
    preprocessing, which CutMix boxes are drawn in. Jobs derive only from the inputs, so
    asking twice gives the same jobs.
    """

    def __init__(
        self,
        originals: Sequence[Original],
        split_of: Mapping[str, str],
        variants_per_class: Mapping[str, Sequence[int]],
        fingerprints: Fingerprints,
        seed: int,
        output_format: str,
        *,
        mix: Sequence[MixSpec] = (),
        mix_size: tuple[int, int] | None = None,
        balance: bool | str = False,
    ) -> None:
        self._fingerprints = fingerprints
        self._seed = seed
        self._format = output_format
        self._mix = mix
        self._mix_size = mix_size
        accepted, self.rejected = _drop_exact_duplicates(originals, split_of, output_format)
        train: dict[str, list[Original]] = {}
        for original in accepted:
            if split_of[original.path] == "train":
                train.setdefault(original.label, []).append(original)
        self._partners = PartnerPool([o for members in train.values() for o in members], mix)
        # --balance instances' steered CopyPaste draws (stages/partners.py), as it made them
        self._pastes = any(spec.kind == "copypaste" for spec in mix)
        self._steered: dict[tuple[str, int], PlannedMix | None] = {}
        per_original, self.balanced_objects = plan_balance(
            train, variants_per_class, seed, balance, self._added if mix else None
        )
        self._sources: list[tuple[Original, str, Sequence[int]]] = []
        for original in accepted:
            split = split_of[original.path]
            if split != "train":
                variants: Sequence[int] = (0,)
            else:
                variants = per_original.get(original.path, variants_per_class[original.label])
            self._sources.append((original, split, variants))
        self._drop_clashes()
        self.outputs = sum(len(variants) for _, _, variants in self._sources)

    def _drop_clashes(self) -> None:
        """A safety net: an original none of whose names may be taken by an earlier one.

        Every key embeds its original's sha256, so only originals with the same bytes can
        plan the same name (exact duplicates are dropped before; a mixed variant of a copy
        filed under another class can still land in that class's folder): only their jobs
        are compared, so no name of the others is held.
        """
        counts = Counter(original.sha256 for original, _, _ in self._sources)
        if max(counts.values(), default=0) < 2:
            return
        planned: dict[str, str] = {}
        kept = []
        for original, split, variants in self._sources:
            if counts[original.sha256] > 1:
                paths = [job.path for job in self._jobs(original, split, variants)]
                clash = next((planned[p] for p in paths if p in planned), None)
                if clash is not None:
                    self.rejected.append(Rejected(original.path, f"exact duplicate of {clash}"))
                    continue
                planned.update((p, original.path) for p in paths)
            kept.append((original, split, variants))
        self._sources = kept

    def _added(self, original: Original, variant: int, wanted: Wanted | None) -> Brought:
        """What a variant's mix brings besides its own objects (`--balance instances`); with
        `wanted`, the draw is the one the variant's job gets."""
        seed = job_seed(self._seed, original.sha256, variant)
        planned = plan_mix(original, seed, self._mix, self._partners, self._mix_size, wanted)
        if wanted is not None and self._pastes:
            self._steered[original.path, variant] = planned
        if planned is None:
            return Brought(Counter())
        return Brought(added_objects(planned, self._mix_size), planned.kind == "copypaste")

    def _mix_of(self, original: Original, variant: int, seed: int) -> PlannedMix | None:
        if (original.path, variant) in self._steered:
            return self._steered[original.path, variant]
        return plan_mix(original, seed, self._mix, self._partners, self._mix_size)

    def __len__(self) -> int:
        return len(self._sources)

    def tasks(self, todo: Mapping[int, int] | None = None, most: int = 0) -> Iterator[SourceTask]:
        """Every task in order; with `todo` (task index -> bit mask of its jobs), only those
        jobs; with `most`, in pieces of at most `most` jobs, each made when asked for."""
        for index, (original, split, variants) in enumerate(self._sources):
            mask = -1 if todo is None else todo.get(index, 0)
            step = most or len(variants) or 1
            for start in (range(0, len(variants), step) or range(1)) if mask else ():
                jobs = self._jobs(original, split, variants[start : start + step])
                if mask != -1:
                    jobs = tuple(job for j, job in enumerate(jobs, start) if mask >> j & 1)
                if jobs or not variants:
                    yield SourceTask(original=original, split=split, outputs=jobs)

    def task(self, index: int) -> SourceTask:
        return SourceTask(*self._sources[index][:2], self._jobs(*self._sources[index]))

    def _jobs(
        self, original: Original, split: str, variants: Sequence[int]
    ) -> tuple[OutputJob, ...]:
        stem = safe_name(Path(original.path).stem)
        ext = output_extension(original, self._format)
        jobs = []
        for v in variants:
            job_seed_ = job_seed(self._seed, original.sha256, v)
            planned_mix = self._mix_of(original, v, job_seed_) if v and self._mix else None
            label = planned_mix.label if planned_mix else original.label
            partner_sha = planned_mix.partner_key if planned_mix else None
            key = output_key(content_id(original), self._fingerprints, self._seed, v, partner_sha)
            folder = (
                f"{split}/{safe_name(label)}"
                if original.annotation is None
                else f"images/{SPLIT_FOLDERS[split]}"
            )
            jobs.append(
                OutputJob(
                    path=f"{folder}/{stem}{NAME_SEPARATOR}{key}.{ext}",
                    variant=v,
                    seed=job_seed_,
                    mix=planned_mix,
                )
            )
        return tuple(jobs)


def _drop_exact_duplicates(
    originals: Sequence[Original], split_of: Mapping[str, str], output_format: str
) -> tuple[list[Original], list[Rejected]]:
    """Same bytes, same class, same split and same stem: its outputs would be the very same
    files, so only the first is kept."""
    seen: dict[tuple[str, ...], str] = {}
    accepted: list[Original] = []
    rejected: list[Rejected] = []
    for original in originals:
        identity = (
            split_of[original.path],
            safe_name(original.label),
            safe_name(Path(original.path).stem),
            original.sha256,
            output_extension(original, output_format),
            content_id(original),
        )
        if identity in seen:
            rejected.append(Rejected(original.path, f"exact duplicate of {seen[identity]}"))
            continue
        seen[identity] = original.path
        accepted.append(original)
    return accepted, rejected


def shard_tasks(tasks: Iterable[SourceTask], outputs_per_shard: int) -> Iterator[list[SourceTask]]:
    """Tasks in shards of about `outputs_per_shard` outputs: the unit of work and resume."""
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
