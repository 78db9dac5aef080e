"""`augment diff OLD NEW`: what changed between two outputs, from their manifests alone.

Each output is put in exactly one class:

- **unchanged**: the same path in both, with the same sha256;
- **changed**: the same *lineage* in both but another name or other bytes. An output's
  lineage is (split, label, the paths of its sources, variant): "the 3rd variant of
  train/cat/tom.jpg". It changes when its source's bytes, the recipe or the seed change
  (names are content-keyed, so its name changes too); `why` says which of these differ
  (`source`, `recipe`, `seed`, or `bytes` when only the file's bytes do);
- **added** / **removed**: an output whose path and lineage exist only in NEW / only in OLD
  (a new or removed source, a grown `--times`, a new split).

Matching by path comes first, then by lineage among the rest; a lineage that occurs more
than once on a side is not matched by lineage (its outputs count as added and removed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.layout import MANIFEST_NAME
from augment.stages.manifest import Record, read_jsonl


@dataclass(frozen=True)
class Change:
    old: str
    new: str
    why: tuple[str, ...]


@dataclass
class ManifestDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "added": self.added,
            "removed": self.removed,
            "changed": [{"old": c.old, "new": c.new, "why": list(c.why)} for c in self.changed],
            "unchanged": self.unchanged,
        }


def load_records(where: Path) -> list[Record]:
    """The records of an output folder (its manifest.jsonl) or of a manifest file."""
    return read_jsonl(where / MANIFEST_NAME if where.is_dir() else where)


def lineage(record: Record) -> tuple[Any, ...]:
    sources = tuple(s.get("path") for s in record.get("sources", []) if isinstance(s, dict))
    return (record.get("split"), record.get("label"), sources, record.get("variant"))


def diff_records(old: Sequence[Record], new: Sequence[Record]) -> ManifestDiff:
    result = ManifestDiff()
    old_by_path = {r["path"]: r for r in old}
    new_by_path = {r["path"]: r for r in new}
    for path in sorted(old_by_path.keys() & new_by_path.keys()):
        before, after = old_by_path[path], new_by_path[path]
        if before.get("sha256") == after.get("sha256"):
            result.unchanged.append(path)
        else:
            result.changed.append(Change(path, path, _why(before, after)))

    old_rest = _unique_lineages(r for p, r in old_by_path.items() if p not in new_by_path)
    new_rest = _unique_lineages(r for p, r in new_by_path.items() if p not in old_by_path)
    matched_old: set[str] = set()
    matched_new: set[str] = set()
    for key in old_rest.keys() & new_rest.keys():
        before, after = old_rest[key], new_rest[key]
        result.changed.append(Change(before["path"], after["path"], _why(before, after)))
        matched_old.add(before["path"])
        matched_new.add(after["path"])
    result.removed = sorted(p for p in old_by_path if p not in new_by_path and p not in matched_old)
    result.added = sorted(p for p in new_by_path if p not in old_by_path and p not in matched_new)
    result.changed.sort(key=lambda c: (c.new, c.old))
    return result


def diff_outputs(old: Path, new: Path) -> ManifestDiff:
    return diff_records(load_records(old), load_records(new))


def _unique_lineages(records: Iterable[Record]) -> dict[tuple[Any, ...], Record]:
    groups: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    for r in records:
        groups[lineage(r)].append(r)
    return {key: rs[0] for key, rs in groups.items() if len(rs) == 1}


def _why(before: Record, after: Record) -> tuple[str, ...]:
    def source_shas(r: Record) -> list[Any]:
        return [s.get("sha256") for s in r.get("sources", []) if isinstance(s, dict)]

    why = []
    source_changed = source_shas(before) != source_shas(after)
    if source_changed:
        why.append("source")
    if before.get("recipe") != after.get("recipe"):
        why.append("recipe")
    # A variant's recorded seed derives from the run's seed and its source's bytes: a
    # changed source alone changes it too.
    if before.get("seed") != after.get("seed") and not source_changed:
        why.append("seed")
    return tuple(why) or ("bytes",)


def format_diff(diff: ManifestDiff, old: str, new: str) -> str:
    """The human form: one line per difference (`+` added, `-` removed, `~` changed),
    then the counts."""
    lines = [f"--- {old}", f"+++ {new}"]
    lines.extend(f"- {p}" for p in diff.removed)
    lines.extend(f"+ {p}" for p in diff.added)
    for c in diff.changed:
        target = c.new if c.new == c.old else f"{c.old} -> {c.new}"
        lines.append(f"~ {target} ({', '.join(c.why)})")
    counts = diff.counts()
    lines.append(", ".join(f"{n} {what}" for what, n in counts.items()))
    return "\n".join(lines)
