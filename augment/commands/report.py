"""Plain text for the commands' reports: expand's summary, and the tables it shares with
audit's report."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from augment.model import ExpandSummary, Rejected, Rejections

MIN_CLASS_WIDTH = 7  # fits the "(none)" shown for an empty class name


def class_width(classes: Sequence[str]) -> int:
    return max([len(c) for c in classes] + [MIN_CLASS_WIDTH])


def class_count_table(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """A class x split table of file counts with a total row, as indented lines."""
    classes = sorted({c for per_split in counts.values() for c in per_split})
    splits = list(counts)
    width = class_width(classes)
    lines = [f"  {'class':<{width}}  " + "  ".join(f"{s:>10}" for s in splits)]
    for c in classes:
        cells = "  ".join(f"{counts[s].get(c, 0):>10}" for s in splits)
        lines.append(f"  {c or '(none)':<{width}}  {cells}")
    totals = "  ".join(f"{sum(counts[s].values()):>10}" for s in splits)
    lines.append(f"  {'total':<{width}}  {totals}")
    return lines


def _dropped_note(summary: ExpandSummary) -> list[str]:
    """Annotated sets: the objects the transforms dropped (see docs/annotations.md)."""
    if not summary.dropped_objects:
        return []
    per_class = ", ".join(f"{label} {n}" for label, n in summary.dropped_objects.items())
    return [f"note: objects dropped by the transforms (too little left): {per_class}"]


def _balanced_objects(report: dict[str, dict[str, int]]) -> list[str]:
    width = class_width(list(report))
    mixes = any("mixed" in n for n in report.values())  # a recipe's mixes bring objects too
    pasted = any("pasted" in n for n in report.values())  # of those, CopyPaste's instances
    lines = ["balanced train objects (planned, before objects the transforms drop):"]
    head = f"  {'class':<{width}}  {'originals':>9}  {'--times N':>9}  {'balanced':>8}"
    head += "  of which from mixes" if mixes else ""
    lines.append(head + ("  of which pasted" if pasted else ""))
    for c, n in report.items():
        row = f"{n['originals']:>9}  {n['times']:>9}  {n['planned']:>8}"
        row += f"  {n['mixed']:>20}" if mixes else ""
        row += f"  {n.get('pasted', 0):>16}" if pasted else ""
        lines.append(f"  {c:<{width}}  {row}")
    return lines


def format_summary(summary: ExpandSummary) -> str:
    """What `augment expand` prints when it is done."""
    lines = [f"wrote {summary.out}"]
    lines.extend(class_count_table(summary.counts))
    if summary.balanced_objects:
        lines.extend(_balanced_objects(summary.balanced_objects))
    elif summary.balanced:
        classes = sorted({c for counts in summary.counts.values() for c in counts})
        width = class_width(classes)
        lines.append("balanced train: originals -> images per class")
        after = summary.counts.get("train", {})
        for c in classes:
            before = summary.train_originals.get(c, 0)
            lines.append(f"  {c:<{width}}  {before:>10} -> {after.get(c, 0)}")
    originals = ", ".join(f"{n} {s}" for s, n in summary.originals.items())
    lines.append(f"originals: {originals}")
    rate = ""  # a rate only means something for a run that wrote images
    if summary.written and summary.seconds > 0:
        rate = f" ({summary.written / summary.seconds:.0f} images/s)"
    lines.append(
        f"{summary.written} files written, {summary.reused} unchanged, {summary.removed} "
        f"stale removed in {summary.seconds:.1f}s{rate}"
    )
    if summary.duplicates:
        lines.append(f"duplicate originals kept in one split ({len(summary.duplicates)} clusters):")
        for cluster in summary.duplicates:
            names = cluster.labels
            filed = f" (filed under classes {', '.join(names)})" if len(names) > 1 else ""
            lines.append(f"  {', '.join(cluster.paths)}{filed}")
    by = "the source's own split" if summary.source_split else "an earlier run"
    for conflict in summary.duplicate_conflicts:
        placed = ", ".join(f"{p} ({s})" for p, s in sorted(conflict.previous_splits.items()))
        lines.append(
            f"warning: duplicate originals {', '.join(conflict.paths)} were split apart by "
            f"{by} and stay where they are: {placed}; `augment audit` reports the leak"
        )
    for g in summary.large_groups:
        others = g.size - g.in_class
        also = f" and {others} of other classes" if others else ""
        lines.append(
            f"warning: class {g.label!r}: one group holds {g.in_class} of its {g.class_size} "
            f"originals{also} (more than a tenth), all in {g.split}: group {g.group!r}"
        )
    for q in summary.quota_shifts:
        moved = ", ".join(f"{s} {n:+d}" for s, n in q.moved.items())
        quotas = "/".join(str(n) for n in q.quotas.values())
        counts = "/".join(str(n) for n in q.counts.values())
        lines.append(
            f"note: class {q.label!r}: group {q.group!r} ({q.size} originals) is too large for "
            f"its quotas: the class's splits moved by {moved} (train/validation/test "
            f"{counts} instead of {quotas})"
        )
    lines.extend(f"warning: {text}" for text in summary.warnings)
    for label in summary.too_small:
        lines.append(f"note: class {label!r} has fewer than 3 originals: all kept in train")
    lines.extend(_dropped_note(summary))
    lines.extend(consumer_notes(summary))
    if summary.rejected:
        lines.append(
            f"rejected {len(summary.rejected)} input files "
            f"(also in {summary.out / 'augment.json'}, under 'rejected'):"
        )
        every = f"every one is in {summary.out / 'augment.json'}, under 'rejected'"
        lines.extend(rejection_lines(summary.rejected, every))
    return "\n".join(lines)


# Rejections listed one by one; past them, a count per reason and where every one is.
SHOWN_REJECTIONS = 50
SHOWN_REASONS = 10


def rejection_lines(rejected: Collection[Rejected], every: str) -> list[str]:
    """The first SHOWN_REJECTIONS rejections (in the collection's order, by path) as
    `  path: reason` lines; past them, how many more, the most frequent reasons, and
    `every`: where the user finds them all."""
    shown = list(itertools.islice(rejected, SHOWN_REJECTIONS))
    lines = [f"  {r.path}: {r.reason}" for r in shown]
    more = len(rejected) - len(shown)
    if more <= 0:
        return lines
    lines.append(f"  ... and {more} more ({every})")
    reasons = rejected.reasons if isinstance(rejected, Rejections) else None
    if reasons is None:
        reasons = Counter(r.reason for r in rejected)
    top = reasons.most_common(SHOWN_REASONS)
    lines.append(
        "  rejections per reason"
        + (" (the most frequent):" if len(reasons) > SHOWN_REASONS else ":")
    )
    lines.extend(f"  {n:>10}  {reason}" for reason, n in top)
    return lines


def consumer_notes(summary: ExpandSummary) -> list[str]:
    """What a trainer loading OUT must know: the split used, classes a split lacks, WebP."""
    lines = []
    if summary.source_split:
        lines.append("split: the source's own (its train/validation/test); --resplit pools it")
    for split, missing in summary.missing_classes.items():
        lines.append(
            f"note: {split} has no image of class {', '.join(map(repr, missing))}: its folder is "
            f"left empty so that every loader numbers the classes alike (torchvision ImageFolder "
            f"needs allow_empty=True; {summary.out / 'classes.json'} lists them in index order)"
        )
    if summary.webp_outputs:
        lines.append(
            "note: some outputs are WebP, which Keras image_dataset_from_directory skips "
            "without a word: use --format png or --format jpg for Keras"
        )
    return lines
