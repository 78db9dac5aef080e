"""Plain-text tables shared by the commands' reports (expand's summary, audit's report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
