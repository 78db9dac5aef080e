"""Proving that a rerun would change nothing, so that `expand` can return without planning.

What a run writes is a function of what it is made from: the tool (its code, the Python
and the libraries that make pixels or read recipes), what the recipe says, every option but
`--workers`, the source listing (each path, label and group, and each file's
content) and the previous header (sticky splits, known hashes). At the end of every complete
run `expand` keeps two digests in `OUT/.augment/state.json`:

- `inputs`: of all that but the header;
- `output`: of every file and folder in OUT as the run left it, with each file's stamp
  (size, mtime, ctime, inode); the state folder aside. Not only the tool's own files: a
  full run deletes temporary files wherever they are and gives any split folder a
  metadata.csv, so a file or an empty folder that appeared must count as a change. Taken
  from one `scandir` per folder, a folder's listing hashed as one `repr`
  (`output_digest` says which form; the earlier one is still compared).

A rerun may return at once when both digests are the same, when every source was vouched
for by its remembered stamp (see augment/state.py: a new, touched or racy source is read,
and then this proof does not hold; one remembered as no image is not read), and when the
state folder holds no journal or temporary file (an interrupted run). The header is then
the one the last run wrote; `expand` also checks that it gives back the same holdout, so
that the jobs, and hence every record, name and byte, are the last run's: its rejections
too, since a run is only remembered as complete when every one of them is a verdict the
same inputs give again (see `remember_run`).

Any doubt means the full run, which is always correct, only slower. OUT's stamps are trusted
as the outputs' stamps are: augment writes every file atomically under a new inode, so its
own writes always show; an edit in place by someone else at the same size within the same
mtime tick would not.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment import __version__
from augment.layout import LEGACY_LOCK_NAME, OUTPUTS_STATE_NAME, STATE_DIR, STATE_NAME
from augment.model import Dataset
from augment.rerun.state import OutputStamp, RunState, Stamp, stamp_from

DIGEST_FORMAT = 2  # bump when what the digests cover changes
# The no-op rerun's memo (augment/rerun/memo.py), beside state.json.
MEMO_NAME = f"{STATE_DIR}/rerun.json"
# The libraries whose versions can change output bytes: albumentations and OpenCV make
# pixels, numpy draws the noise, Pillow and simplejpeg decode and encode, PyYAML reads the
# recipe and pydantic fills in the transforms' arguments; imgaug makes the pixels of imgaug
# recipes (absent without the extra: its stamp then says so).
_LIBRARIES = ("albumentations", "cv2", "numpy", "PIL", "simplejpeg", "yaml", "pydantic", "imgaug")
# What the state folder holds between runs; anything else (a journal, a temporary file
# left by a killed write) comes from an interrupted run.
_SETTLED_STATE = frozenset(
    Path(name).name for name in (STATE_NAME, OUTPUTS_STATE_NAME, LEGACY_LOCK_NAME, MEMO_NAME)
)


@functools.cache
def code_fingerprint() -> str:
    """The tool's own modules: a development checkout or an upgrade that kept the version
    number makes the next run a full one."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def library_stamps() -> list[list[Any]]:
    """Each library in `_LIBRARIES`: the file it is (or would be) imported from, with that
    file's stamp. Installing another version writes new files, so a changed stamp stands
    for a changed version, and none of them has to be imported to tell (albumentations
    alone takes ~0.4 s); a reinstall of the same version only costs one full run."""
    stamps: list[list[Any]] = []
    for name in _LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
            origin = spec.origin if spec is not None else None
            st = os.stat(origin) if origin else None
        except (ImportError, ValueError, OSError):
            origin, st = None, None
        stamps.append([name, origin, *((st.st_size, st.st_mtime_ns, st.st_ino) if st else ())])
    return stamps


def tool_identity() -> list[Any]:
    """What decides how a file is read and what is made of it: the tool's version and code,
    the Python, and the files the pixel libraries are imported from."""
    return [__version__, code_fingerprint(), sys.version, library_stamps()]


@functools.cache
def tool_stamp() -> str:
    """A short digest of `tool_identity`: what a remembered verdict on a file was reached
    with (see state.SourceCache.remember_rejected)."""
    return _sha256(json.dumps(tool_identity()))[:16]


def inputs_digest(recipe: str, options: Mapping[str, Any], dataset: Dataset) -> str:
    """What a run is made from, but the previous header. `recipe` what it says
    (`recipe_source.recipe_statement`); `dataset` as ingest read it (before duplicates merge
    groups); `options` every option that can change what is written."""
    doc = {
        "format": DIGEST_FORMAT,
        "tool": tool_identity(),
        "recipe": recipe,
        "options": options,
        "source": [str(dataset.root), dataset.kind],
        "originals": [
            [o.path, o.label, o.group, o.sha256, o.format, o.width, o.height]
            # An annotated source's annotation content: an edited label file is a change.
            + ([o.annotation.sha256] if o.annotation is not None else [])
            for o in dataset.originals
        ],
        "rejected": _rejections_digest(dataset),
    }
    return _sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")))


def _rejections_digest(dataset: Dataset) -> str:
    """A digest of every rejection, taken a rejection at a time: a labels file may reject
    millions of rows, too many to put in one JSON document."""
    digest = hashlib.sha256()
    for path, reason, _ in dataset.rejected.entries():
        # NUL between path and reason: no path holds one (such a row is shown by its repr).
        digest.update(f"{path}\0{reason}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


# How `last_run["output"]` was taken: 1 (or absent), json of the sorted snapshot; 2, the
# folder listings of `folders_of`. A state written by a version that took the first is
# still compared in its own way, so that its OUT stays a no-op rerun.
OUTPUT_DIGEST = 2

Folder = tuple[str, list[tuple[str, Stamp | None]]]  # its path under the root, its entries
Listing = list[Folder]


class Unvouched(Exception):
    """A tree a stamp cannot vouch for: a symbolic link in it, a folder not listable."""


def _output_listing(out: Path) -> Listing | None:
    """`folders_of` OUT, the state folder aside, held; None when it is `Unvouched`."""
    try:
        return list(folders_of(out, STATE_DIR))
    except Unvouched:
        return None


def folders_of(root: Path, skip: str = "") -> Iterator[Folder]:
    """Each folder under `root` (its path relative to it, with a trailing slash but for
    `root` itself) with its entries by name: a file with its stamp, a folder with None;
    an entry of `root` named `skip` aside. Folders in a fixed order (depth first, by name),
    so that two walks of the same tree give the same list; one at a time, so that a tree of
    any size is never held. One `scandir` a folder and an `lstat` a file. Raises
    `Unvouched` for a symbolic link or a folder not listable."""
    folders = [("", str(root))]
    while folders:
        prefix, folder = folders.pop()
        entries: list[tuple[str, Stamp | None]] = []
        below = []
        try:
            with os.scandir(folder) as found:
                for entry in found:
                    if not prefix and entry.name == skip:
                        continue
                    if entry.is_symlink():
                        raise Unvouched(entry.path)
                    if entry.is_dir():
                        entries.append((entry.name, None))
                        below.append((prefix + entry.name + "/", entry.path))
                    else:
                        st = entry.stat()
                        entries.append((entry.name, stamp_from(st)))
        except OSError as exc:
            raise Unvouched(folder) from exc
        entries.sort()
        yield prefix, entries
        folders.extend(sorted(below, reverse=True))  # popped in name order


def listing_digest(listing: Iterable[Folder]) -> str:
    """sha256 of each folder's repr in turn (repr escapes any name that is not valid
    UTF-8)."""
    digest = hashlib.sha256()
    for folder in listing:
        digest.update(repr(folder).encode() + b"\n")
    return digest.hexdigest()


def tree_digest(root: Path, skip: str = "") -> str | None:
    """`listing_digest` of `folders_of` `root`, a folder at a time; None if `Unvouched`."""
    try:
        return listing_digest(folders_of(root, skip))
    except Unvouched:
        return None


def output_snapshot(out: Path) -> dict[str, Stamp | None] | None:
    """Every file (with its stamp) and folder (None) under OUT, the state folder aside; None
    when a stamp cannot vouch for what is there (see `_output_listing`)."""
    listing = _output_listing(out)
    if listing is None:
        return None
    return {
        prefix + name + ("/" if stamp is None else ""): stamp
        for prefix, entries in listing
        for name, stamp in entries
    }


def snapshot_digest(snapshot: Mapping[str, Stamp | None]) -> str:
    """The digest of OUT as versions before `OUTPUT_DIGEST` 2 took it: sha256 of
    `json.dumps(sorted(snapshot.items()))`, fed a thousand entries at a time."""
    # json's ASCII escapes take file names that are not valid UTF-8 (surrogates) as well.
    digest = hashlib.sha256(b"[")
    paths = sorted(snapshot)
    for start in range(0, len(paths), 1000):
        chunk = [(path, snapshot[path]) for path in paths[start : start + 1000]]
        digest.update((", " if start else "").encode() + json.dumps(chunk)[1:-1].encode())
    digest.update(b"]")
    return digest.hexdigest()


def _output_unchanged(out: Path, last: Mapping[str, Any]) -> bool:
    """OUT is as the last run left it, by the digest in the form that run took it."""
    if last.get("output_digest", 1) == OUTPUT_DIGEST:
        return last["output"] == tree_digest(out, STATE_DIR)
    snapshot = output_snapshot(out)
    return snapshot is not None and last.get("output") == snapshot_digest(snapshot)


def remember_run(
    out: Path,
    state: RunState,
    inputs: str,
    outputs: Iterable[tuple[str, OutputStamp | None]],
    clusters: Sequence[Sequence[str]],
    complete: bool,
) -> None:
    """At the end of a run, store the digests the next run compares with, if OUT is
    provably what this run made: the run is `complete` (every planned output was made or
    left out for a rejection the same inputs give again, none for one whose cause may pass,
    which the next run tries again), and each of its `outputs`
    (path order, with the entry state.json keeps) still has the stamp it was written or
    verified with (nothing changed it while the run went on). The run's duplicate
    `clusters` (paths) are kept with them: the next run, if unchanged, has the same."""
    state.last_run = None
    listing = _output_listing(out) if complete else None
    if listing is None:
        return
    # By folder and name: the listing's own strings, no path made per file.
    stamps = {prefix: dict(entries) for prefix, entries in listing}
    for path, entry in outputs:
        folder, slash, name = path.rpartition("/")
        found = stamps.get(folder + slash, {}).get(name)
        if entry is None or found != tuple(entry["stamp"]):
            return
    del stamps
    state.last_run = {
        "inputs": inputs,
        "output": listing_digest(listing),
        "output_digest": OUTPUT_DIGEST,
        "clusters": [list(c) for c in clusters],
    }


def remembered_clusters(state: RunState) -> list[list[str]] | None:
    """The duplicate clusters the last complete run found; None if not (well) recorded."""
    clusters = (state.last_run or {}).get("clusters")
    if not isinstance(clusters, list) or not all(
        isinstance(c, list) and all(isinstance(p, str) for p in c) for c in clusters
    ):
        return None
    return clusters


def unchanged_since_last_run(out: Path, state: RunState, inputs: str) -> bool:
    """True when this run is made from what the last complete run was, every source was
    vouched for by its stamp, and OUT is as that run left it."""
    last = state.last_run
    if last is None or last.get("inputs") != inputs or state.sources.misses:
        return False
    return settled_state(out) and _output_unchanged(out, last)


def settled_state(out: Path) -> bool:
    """The state folder holds no journal or temporary file (left by an interrupted run)."""
    try:
        return set(os.listdir(out / STATE_DIR)) <= _SETTLED_STATE
    except OSError:
        return False


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
