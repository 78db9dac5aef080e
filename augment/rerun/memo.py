"""The no-op rerun's memo: what the proof of augment/rerun/uptodate.py would conclude,
kept so that a rerun that meets the same files can return without ingest or holdout.

That proof reads every source's entry in state.json, lists the sources as ingest does,
takes the inputs' digest, compares OUT, then holds out again from the header to rebuild
the summary: ~0.3 s of CPU at 10,000 sources, most of a rerun. Its conclusion is a function
of what it reads: SRC (every file's stamp: size, mtime, ctime, inode), the recipe's
statement, the options, the tool, OUT (every file's stamp, the header among them) and the
state files (their stamps). When all of that is as it was, the conclusion is too.

So a complete full run, once it has saved its state, draws that conclusion itself
(`run._unchanged_run`, the same call a rerun makes) and keeps it in `OUT/.augment/
rerun.json` with the stamps it rests on: a digest of SRC's listing taken *before* ingest
read anything (a file changed after it shows in the next listing), of OUT's listing, of
what else the run was made from, and the stamps of state.json and outputs.jsonl. A rerun
whose digests and stamps all match returns that summary (the rejections read from the
header, as the proof does); any difference, or a memo missing or damaged, leaves the
decision to the proof, which is always there. A rerun never writes the memo: a no-op
rerun leaves every file untouched.

Only what a stamp vouches for is kept: SRC with a symbolic link in it, a file whose stamp
is racy (its mtime by augment/rerun/state.py's rule, its ctime within a clock tick of the
listing), or a source the state does not vouch for (to be read again on the next run)
means no memo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from augment.bounded import loads_json
from augment.defaults import IMAGE_EXTENSIONS
from augment.errors import ManifestError, OutputError
from augment.files import ChangedFile
from augment.layout import OUTPUTS_STATE_NAME, STATE_DIR, STATE_NAME
from augment.model import (
    Cluster,
    Dataset,
    ExpandSummary,
    LargeGroup,
    QuotaShift,
    Rejected,
    Rejections,
    in_path_order,
)
from augment.rerun.state import RACY_NS, STAMP_LEN, RunState, Stamp, stamp_of
from augment.rerun.uptodate import (
    MEMO_NAME,
    Folder,
    Unvouched,
    folders_of,
    listing_digest,
    settled_state,
    tool_identity,
    tree_digest,
)

MEMO_FORMAT = "augment-rerun/1"
CTIME_TICK_NS = 20_000_000  # coarser than the kernel clock that stamps ctimes (a jiffy, <= 10 ms)
# The summary's fields the memo keeps; the others are a rerun's own (costs, times, OUT as
# named this time) or read again (the rejections: there may be millions).
_KEPT = (
    "counts",
    "originals",
    "too_small",
    "duplicates",
    "duplicate_conflicts",
    "large_groups",
    "quota_shifts",
    "warnings",
    "train_originals",
    "balanced",
    "balanced_objects",
    "dropped_objects",
    "source_split",
    "missing_classes",
    "webp_outputs",
)


@dataclasses.dataclass(frozen=True)
class Sources:
    """SRC as listed before a run reads it, by the digest of its listing (`tree_digest`):
    the key of the memo a run may keep or use. The listing itself is not held."""

    digest: str
    taken_ns: int  # when: a stamp this close to it is racy


def list_sources(src: Path) -> Sources | None:
    """SRC's listing, when a memo can rest on it (SRC a folder with no symbolic link)."""
    taken = time.time_ns()
    digest = tree_digest(src) if src.is_dir() else None
    return None if digest is None else Sources(digest, taken)


def run_key(sources: Sources, root: str, statement: str, options: Mapping[str, Any]) -> str:
    """What a run is made from, by stamps: SRC's listing, the recipe, the options, the tool."""
    doc = [MEMO_FORMAT, tool_identity(), statement, options, root, sources.digest]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _state_stamps(out: Path) -> list[Any]:
    return [stamp_of(out / STATE_NAME), stamp_of(out / OUTPUTS_STATE_NAME)]


def _output_digest(out: Path) -> str | None:
    return tree_digest(out, STATE_DIR)


def remembered_summary(out: Path, key: str) -> ExpandSummary | None:
    """The summary of a rerun made from what `key` says, if the memo in OUT holds it and OUT
    and its state are as they were when it was kept; else None (the proof decides)."""
    try:
        memo = loads_json((out / MEMO_NAME).read_text(encoding="utf-8"))
        if not isinstance(memo, dict) or memo.get("format") != MEMO_FORMAT:
            return None
        if memo.get("key") != key or not settled_state(out):
            return None
        if memo.get("state") != [list(s) if s else s for s in _state_stamps(out)]:
            return None
        if memo.get("output") != _output_digest(out):
            return None
        return _summary(out, memo["summary"])
    except (OSError, ManifestError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _summary(out: Path, kept: dict[str, Any]) -> ExpandSummary:
    from augment.stages.manifest import iter_rejected  # imported by the run anyway

    rejected = in_path_order(
        Rejections(Rejected(r["path"], r["reason"]) for r in iter_rejected(out))
    )
    fields = {name: kept[name] for name in _KEPT}
    fields["duplicates"] = [_cluster(c) for c in fields["duplicates"]]
    fields["duplicate_conflicts"] = [_cluster(c) for c in fields["duplicate_conflicts"]]
    fields["large_groups"] = [LargeGroup(**g) for g in fields["large_groups"]]
    fields["quota_shifts"] = [QuotaShift(**q) for q in fields["quota_shifts"]]
    summary = ExpandSummary(out=out, written=0, reused=0, removed=0, rejected=rejected, **fields)
    summary.reused = summary.total
    summary.fast_path = True
    return summary


def _cluster(kept: dict[str, Any]) -> Cluster:
    return Cluster(tuple(kept["paths"]), tuple(kept["labels"]), dict(kept["previous_splits"]))


def keep(
    out: Path,
    key: str,
    sources: Sources,
    state: RunState,
    dataset: Dataset,
    summary: ExpandSummary | None,
) -> None:
    """After a complete full run has saved its state: keep `summary` (what the proof gives
    on a rerun now, None if it would not hold) as the memo for a rerun made from `key`, if
    SRC, listed again, is as it was listed before the run and vouches for every source as
    the state does; else remove any memo."""
    # The run is complete by now: a memo that cannot be written or removed only costs the
    # next rerun its proof (a stale one rests on stamps that no longer hold), never the run.
    # A failed write of OUT's files is an OutputError (files.output_error), not an OSError.
    with contextlib.suppress(OSError, OutputError):
        memo = out / MEMO_NAME
        if summary is None or state.last_run is None or not _vouched(sources, state, dataset):
            memo.unlink(missing_ok=True)
            return
        kept = {name: getattr(summary, name) for name in _KEPT}
        for name in ("duplicates", "duplicate_conflicts", "large_groups", "quota_shifts"):
            kept[name] = [dataclasses.asdict(item) for item in kept[name]]
        doc = {
            "format": MEMO_FORMAT,
            "key": key,
            "output": _output_digest(out),
            "state": _state_stamps(out),
            "summary": kept,
        }
        file = ChangedFile(memo)
        file.write(json.dumps(doc, separators=(",", ":")).encode() + b"\n")
        file.commit()


def _vouched(sources: Sources, state: RunState, dataset: Dataset) -> bool:
    """SRC, listed again a folder at a time, is as before the run (nothing changed while it
    went on); no stamp in it is racy; every original and every file with an image's name
    has an entry in the state with the stamp listed: the next ingest reads none of them,
    as the proof requires."""
    originals = {o.path for o in dataset.originals}
    listed = set()

    def checked(folders: Iterator[Folder]) -> Iterator[Folder]:
        for folder in folders:
            prefix, found = folder
            for name, stamp in found:
                if stamp is not None:
                    path = prefix + name
                    if not _still(path, stamp, sources.taken_ns, state):
                        raise Unvouched(path)
                    if path in originals:
                        listed.add(path)
            yield folder

    try:
        digest = listing_digest(checked(folders_of(Path(state.sources.root))))
    except Unvouched:
        return False
    return digest == sources.digest and listed == originals


def _still(path: str, stamp: Stamp, taken_ns: int, state: RunState) -> bool:
    """The file was still before the listing (the state's racy rule for the mtime; a ctime
    comes from the kernel's clock, which ticks every few milliseconds, so a change within
    the listing's tick could keep it), and, if it has an image's name, the state holds an
    entry with its stamp (one it would read again, as over the pixel limit, has none)."""
    if stamp[1] >= taken_ns - RACY_NS or stamp[2] >= taken_ns - CTIME_TICK_NS:
        return False
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
        return True
    entry = state.sources.entries.get(path)
    return entry is not None and entry[:STAMP_LEN] == stamp
