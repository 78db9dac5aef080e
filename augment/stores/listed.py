"""Ingest of a store SRC from its listing, with no local copy of SRC.

The names, sizes and ETags come from the one listing the run already took; each source is
then read once through the store (one GET), and from those bytes come what the driver needs
before planning: the sha256, the real format and size from the image header, and the pHash
the near-duplicate grouping compares (a ranged GET of the header alone would give neither
the sha256 nor the pHash). The bytes are not kept: the workers read their sources through
the store again (augment/stages/shard_worker.py), checking the same sha256. What the ingest
took of each image is kept in the run state by ETag: a later run with work reads only the
versions it has not seen (an unchanged run reads none: it stops before ingest).

What it reads is the class-folder layout (`SRC/<class>/...`, or `SRC/<split>/<class>/...`),
with the walk's rules (augment/stages/ingest.py) applied to the listed names: hidden names
skipped, files outside a class folder and names that are not images rejected, a class
folder with nothing visible rejected, in the walk's order. A labels file or an annotated
layout (YOLO, COCO, masks, VOC) is still staged locally (augment/stores/sources.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augment.defaults import IMAGE_EXTENSIONS, SPLIT_NAMES
from augment.errors import DatasetError, TooManyPixels, UnreadableImage
from augment.model import Dataset, Original, Phase, Rejected
from augment.stages.ingest import group_of, max_source_bytes, sorted_and_found
from augment.stores.sources import READERS, Source
from augment.stores.store import Entry

if TYPE_CHECKING:
    from augment.imaging.digests import ImageHash

# Top folders or files that make SRC an annotated layout (annotations/detect.py): staged.
_ANNOTATED_TOPS = frozenset({"images", "labels", "masks", "annotations", "jpegimages"})
_BATCH = 256  # sources read at a time: their bytes are held only until hashed


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _visible(entry: Entry) -> bool:
    return not any(_hidden(part) for part in entry.path.split("/"))


def reads_from_listing(source: Source) -> bool:
    """Whether SRC is read from its listing: no labels file, and nothing at its top that
    could make it an annotated layout (annotations/detect.py looks only there: data.yaml,
    a *.json, images/, labels/, masks/, Annotations/, JPEGImages/). Else it is staged."""
    if source.name is not None:
        return False
    for entry in filter(_visible, source.entries):
        top, _, rest = entry.path.partition("/")
        if top.lower() in _ANNOTATED_TOPS or (not rest and not _is_image(top)):
            return False
    return True


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS  # as ingest._locate


@dataclass
class ListedIngest:
    """`augment.stages.ingest.SourceListing` for a store SRC. After `ingest`: `read` holds
    ETag -> sha256 of every source read (or vouched for), `hashes` sha256 -> pHash
    (near-duplicates on), `ingested` ETag -> what the ingest took of each image, for the
    run state: a later run with work takes an unchanged ETag's from there, without a GET."""

    source: Source
    known: dict[str, str]  # ETag -> sha256 from the last run: the same ETag must give it
    near_duplicates: bool
    seen: dict[str, list[Any]] = field(default_factory=dict)  # the last run's `ingested`
    read: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, ImageHash] = field(default_factory=dict)
    ingested: dict[str, list[Any]] = field(default_factory=dict)

    def ingest(
        self, root: Path, pattern: re.Pattern[str] | None, max_pixels: int, phase: Phase | None
    ) -> Dataset:
        dataset = Dataset(root=root, kind="folders")
        listed = list(_class_folders(self.source.entries, dataset))
        advance = phase("reading", len(listed)) if phase is not None else None
        with ThreadPoolExecutor(READERS) as pool:
            for begin in range(0, len(listed), _BATCH):
                batch = listed[begin : begin + _BATCH]
                # In the walk's order, as the local ingest keeps its rejections.
                taken = pool.map(lambda e: self._take(e[0], e[1], pattern, max_pixels), batch)
                for found in taken:
                    if isinstance(found, Rejected):
                        dataset.rejected.append(found)
                    else:
                        dataset.originals.append(found)
                if advance is not None:
                    advance(len(batch))
        return sorted_and_found(dataset, str(self.source.store.url))

    def _take(
        self, entry: Entry, label: str, pattern: re.Pattern[str] | None, max_pixels: int
    ) -> Original | Rejected:
        """The listed file as an Original, or its rejection; no GET for a name that is no
        image or a size no image within the limit has (ingest._locate, read_regular_file)."""
        if not _is_image(entry.path.rpartition("/")[2]):
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            return Rejected(entry.path, f"not an image file extension ({extensions})")
        if entry.size > max_source_bytes(max_pixels):
            return Rejected(entry.path, _too_large(entry, max_pixels))
        vouched = self._vouched(entry, label, pattern, max_pixels)
        return vouched or self._read(entry, label, pattern, max_pixels)

    def _vouched(
        self, entry: Entry, label: str, pattern: re.Pattern[str] | None, max_pixels: int
    ) -> Original | None:
        """The source as the last run ingested this very version (its ETag and size), or
        None: read it. The worker that makes its outputs still checks the sha256."""
        from augment.imaging.digests import ImageHash

        seen = self.seen.get(entry.etag)
        try:
            size, digest, fmt, width, height, phash = seen  # type: ignore[misc]
            if size != entry.size or digest != self.known.get(entry.etag):
                return None
            if width * height > max_pixels or (self.near_duplicates and not phash):
                return None  # this run's limit may refuse it; or a pHash is needed
            if phash:
                self.hashes[digest] = ImageHash.from_hex(phash)
        except (TypeError, ValueError):
            return None  # not seen, or a damaged entry: read it
        self.read[entry.etag] = digest
        self.ingested[entry.etag] = seen  # type: ignore[assignment]
        return Original(
            entry.path, label, group_of(entry.path, pattern), digest, fmt, width, height
        )

    def _read(
        self, entry: Entry, label: str, pattern: re.Pattern[str] | None, max_pixels: int
    ) -> Original | Rejected:
        """One GET: the source's sha256, header and pHash (the ingest and the hashing of a
        local run, from the same bytes)."""
        from augment.imaging.codec import open_image

        data = self.source.store.read(entry.path)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != entry.size or self.known.get(entry.etag, digest) != digest:
            raise DatasetError(
                f"source {self.source.store.url}/{entry.path} changed while it was read (its "
                "bytes are not the version its listing names); rerun when it is settled"
            )
        self.read[entry.etag] = digest
        try:
            with open_image(data, max_pixels) as img:
                fmt, (width, height) = img.format or "unknown", img.size
        except (TooManyPixels, UnreadableImage) as exc:
            return Rejected(entry.path, str(exc))
        if self.near_duplicates:
            from augment.imaging.similarity import phash_bytes

            # Unreadable as the local hashing finds it: the worker rejects it with the reason.
            with contextlib.suppress(UnreadableImage):
                self.hashes[digest] = phash_bytes(data)
        phash = self.hashes[digest].to_hex() if digest in self.hashes else ""
        self.ingested[entry.etag] = [entry.size, digest, fmt, width, height, phash]
        group = group_of(entry.path, pattern)
        return Original(entry.path, label, group, digest, fmt, width, height)


def _too_large(entry: Entry, max_pixels: int) -> str:
    """What ingest.read_regular_file says of a file too large to be an image in the limit."""
    limit = max_source_bytes(max_pixels)
    return (
        f"{entry.size:,} bytes, more than any image within --max-pixels can take "
        f"({limit:,}): not read"
    )


def _split_folders(entries: list[Entry]) -> dict[str, str]:
    """ingest.split_folders on the listed names: every visible top folder a split name."""
    tops = {e.path.split("/", 1)[0] for e in entries if "/" in e.path}
    tops = {t for t in tops if not _hidden(t)}
    splits = {name: SPLIT_NAMES.get(name.lower(), "") for name in tops}
    if not splits or not all(splits.values()) or "train" not in splits.values():
        return {}
    return splits


def _walk_key(entry: Entry) -> tuple[tuple[int, str], ...]:
    """The order of os.walk's top-down walk with sorted names: a folder's files, then each
    of its folders in turn."""
    *folders, name = entry.path.split("/")
    return (*((1, f) for f in folders), (0, name))


def _class_folders(entries: list[Entry], dataset: Dataset) -> Iterator[tuple[Entry, str]]:
    """ingest._walk_class_folders on the listed names: (entry, label) of each candidate
    file, the rejections of the walk added to `dataset` in the walk's order."""
    splits = _split_folders(entries)
    depth = 2 if splits else 1
    # Class folders holding only hidden names are listed (their hidden objects) but empty.
    folders = {
        "/".join(e.path.split("/")[:depth])
        for e in entries
        if e.path.count("/") >= depth and not any(_hidden(p) for p in e.path.split("/")[:depth])
    }
    shown = {"/".join(e.path.split("/")[:depth]) for e in entries if _visible(e)}
    empty = folders - shown
    reported: set[str] = set()
    for entry in sorted(entries, key=_walk_key):
        parts = entry.path.split("/")
        for level in range(1, min(depth, len(parts) - 1) + 1):
            folder = "/".join(parts[:level])
            if level == depth and folder in empty and folder not in reported:
                reported.add(folder)
                dataset.rejected.append(
                    Rejected(f"{folder}/", "empty class folder: class left out")
                )
        if not _visible(entry):
            continue
        if len(parts) - 1 < depth:
            expected = "SRC/<split>/<class>/<image>" if splits else "SRC/<class>/<image>"
            dataset.rejected.append(
                Rejected(entry.path, f"not inside a class folder (expected {expected})")
            )
            continue
        if splits:
            dataset.given_splits[entry.path] = splits[parts[0]]
        yield entry, parts[depth - 1]
