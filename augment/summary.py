"""What a run made, as `expand` reports it: the same for a full run and a rerun proven
unchanged."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from augment.errors import RunFailed
from augment.model import Dataset, ExpandOptions, ExpandSummary, Rejected, in_path_order
from augment.stages.duplicates import Grouping
from augment.stages.holdout import SPLITS, Holdout, uses_source_split


def summarize(
    out: Path,
    options: ExpandOptions,
    dataset: Dataset,
    grouping: Grouping,
    holdout: Holdout,
    counts: Mapping[str, dict[str, int]],
    rejected: Iterable[Rejected],
) -> ExpandSummary:
    """What a run made, before its costs (written, reused, timings) are filled in."""
    rejected = in_path_order(rejected)
    # Only the rejected paths that are originals: a labels file may reject millions of rows.
    failed = {path for path, _, _ in rejected.entries() if path in holdout.split_of}
    originals = Counter(s for p, s in holdout.split_of.items() if p not in failed)
    train_originals = Counter(
        o.label
        for o in dataset.originals
        if holdout.split_of[o.path] == "train" and o.path not in failed
    )
    return ExpandSummary(
        out=out,
        counts={s: counts[s] for s in SPLITS if s in counts},
        originals={s: originals[s] for s in SPLITS},
        written=0,
        reused=0,
        removed=0,
        rejected=rejected,
        too_small=holdout.too_small,
        duplicates=grouping.clusters,
        duplicate_conflicts=grouping.conflicts,
        large_groups=holdout.large_groups,
        quota_shifts=holdout.quota_shifts,
        train_originals=dict(sorted(train_originals.items())),
        balanced=bool(options.balance),
        source_split=uses_source_split(dataset, options),
        # Annotated outputs have no class folders (audit's balance counts their objects).
        missing_classes=(
            missing_classes(dataset.classes, counts) if dataset.task == "classification" else {}
        ),
        webp_outputs=_writes_webp(dataset, options),
    )


def missing_classes(
    classes: Sequence[str], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, list[str]]:
    """split -> the classes it has no file of (splits with files only)."""
    found = {s: [c for c in classes if not per_class.get(c)] for s, per_class in counts.items()}
    return {s: missing for s, missing in found.items() if missing}


def _writes_webp(dataset: Dataset, options: ExpandOptions) -> bool:
    if options.output_format != "same":
        return options.output_format == "webp"
    return any(o.format == "WEBP" for o in dataset.originals)


class Laps:
    """Records the seconds each phase took, for ExpandSummary.timings."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.timings[phase] = now - self.last
        self.last = now


def check_train_made(summary: ExpandSummary, options: ExpandOptions) -> None:
    """A run whose recipe rejected every train image, or every train variant, failed: the
    first reason is the likely fix."""
    train = sum(summary.counts.get("train", {}).values())
    originals = 0 if options.no_originals else sum(summary.train_originals.values())
    variants_wanted = options.times - (0 if options.no_originals else 1) > 0
    if train and (train > originals or not variants_wanted):
        return
    if not summary.rejected:
        return
    first = next((r for r in summary.rejected if "variant" in r.reason), None)
    first = first or next(iter(summary.rejected))
    what = "train image" if not train else "train variant"
    raise RunFailed(
        f"every {what} was rejected ({len(summary.rejected)} rejections); the first: "
        f"{first.path}: {first.reason}"
    )


def class_counts(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Output files per (split, class), as a table with both sorted: the header's `counts`
    and the summary's."""
    table: dict[str, dict[str, int]] = {}
    for (split, label), n in sorted(counts.items()):
        table.setdefault(split, {})[label] = n
    return table
