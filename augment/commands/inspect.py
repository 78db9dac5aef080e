"""`augment inspect SRC`: what `expand` would see in SRC and do with it, writing nothing.

The layout it detects (class folders, split folders, a labels file and its split column),
the classes with their originals per planned split, the files it would reject and why, and
the duplicate originals it would keep in one split (or, for a source already split, the
ones the source's own split puts apart). The holdout is expand's own, with the same options,
so the planned sizes are the ones a first run into a new OUT makes.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.commands.report import class_count_table, rejection_lines
from augment.model import Cluster, ExpandOptions, Rejected
from augment.stages.holdout import SPLITS, check_holdout_options, hold_out, uses_source_split
from augment.stages.ingest import ingest
from augment.stages.manifest import write_json


@dataclass
class Inspection:
    src: Path
    layout: str
    source_split: bool  # the split is the source's own
    planned: dict[str, dict[str, int]]  # split -> class -> originals
    rejected: Collection[Rejected] = field(default_factory=list)  # by path
    duplicates: list[Cluster] = field(default_factory=list)  # kept in one split
    split_apart: list[Cluster] = field(default_factory=list)  # by the source's own split
    too_small: list[str] = field(default_factory=list)  # classes kept in train only

    def to_dict(self, streamed: bool = False) -> dict[str, Any]:
        """The inspection as JSON values; `streamed`: its rejections as an iterator, for
        `write_json` (there may be millions)."""
        rejected = ({"path": r.path, "reason": r.reason} for r in self.rejected)
        return {
            "source": str(self.src),
            "layout": self.layout,
            "split": "source" if self.source_split else "held out",
            "planned": self.planned,
            "rejected": rejected if streamed else list(rejected),
            "duplicates": [list(c.paths) for c in self.duplicates],
            "split_apart": [
                {"paths": list(c.paths), "splits": c.previous_splits} for c in self.split_apart
            ],
            "too_small": self.too_small,
        }


def inspect_source(src: str | Path, options: ExpandOptions | None = None) -> Inspection:
    """What `expand SRC OUT` with `options` would read and hold out; nothing is written."""
    options = options or ExpandOptions()
    columns = (options.path_column, options.label_column)
    dataset = ingest(Path(src), options.group_by, options.max_pixels, columns=columns)
    check_holdout_options(dataset, options)
    grouping, holdout = hold_out(dataset, options, {})
    counts = Counter((holdout.split_of[o.path], o.label) for o in grouping.originals)
    planned: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        if any(s == split for s, _ in counts):
            planned[split] = {c: counts[split, c] for c in dataset.classes}
    source_split = uses_source_split(dataset, options)
    return Inspection(
        src=Path(src),
        layout=dataset.layout,
        source_split=source_split,
        planned=planned,
        rejected=dataset.rejected.by_path(),
        duplicates=grouping.clusters,
        split_apart=grouping.conflicts if source_split else [],
        too_small=holdout.too_small,
    )


def print_json(found: Inspection) -> None:
    """`augment inspect --json`: the inspection on stdout, its rejections a few at a time
    (there may be millions), in the bytes `json.dumps(indent=2)` gives."""
    sys.stdout.flush()
    write_json(found.to_dict(streamed=True), sys.stdout.buffer.write)
    sys.stdout.buffer.flush()


def format_inspection(found: Inspection) -> str:
    """What `augment inspect` prints."""
    how = "the source's own split" if found.source_split else "held out by expand"
    classes = {c for per_class in found.planned.values() for c in per_class}
    lines = [
        f"{found.src}: {found.layout}, {len(classes)} classes",
        f"originals per split ({how}):",
        *class_count_table(found.planned),
    ]
    for label in found.too_small:
        lines.append(f"note: class {label!r} has fewer than 3 originals: all kept in train")
    if found.duplicates:
        lines.append(f"duplicate originals kept in one split ({len(found.duplicates)} clusters):")
        lines.extend(f"  {', '.join(c.paths)}" for c in found.duplicates)
    for c in found.split_apart:
        placed = ", ".join(f"{p} ({s})" for p, s in sorted(c.previous_splits.items()))
        lines.append(f"warning: duplicate originals in different splits of the source: {placed}")
    if found.rejected:
        lines.append(f"would reject {len(found.rejected)} files:")
        lines.extend(
            rejection_lines(found.rejected, "`augment inspect SRC --json` lists every one")
        )
    return "\n".join(lines)
