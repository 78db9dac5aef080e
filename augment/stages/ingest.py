"""Reading a labeled source dataset: a class-folder tree (`SRC/<class>/...`, or split
already, `SRC/<split>/<class>/...`) or a CSV/JSONL labels file (augment/stages/labels_file.py).

Every file is read once here to take its sha256 (the identity that names, seeds and caches
derive from) and its real format from the header. Pixels are decoded later, in the workers.
A file that cannot be used is kept as a `Rejected` entry with the reason: the run goes on.
Hidden files and folders (`.DS_Store`, `.git`, a zip's `__MACOSX`) are skipped without a
word: they are the system's, not the dataset's. Symbolic links are never followed out of the
source folder, and a linked folder is never entered (so a link loop cannot hang the walk);
both are reported.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from augment.annotations.detect import detect_layout, read_annotated
from augment.annotations.objects import AnnotationProblem, dominant_class, finish
from augment.defaults import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, SPLIT_NAMES
from augment.errors import DatasetError, TooManyPixels, UnreadableImage
from augment.imaging.digests import sha256_bytes
from augment.model import Dataset, Original, Phase, Rejected
from augment.stages.labels_file import FolderCheck, LabelRows, Row, read_labels_file

if TYPE_CHECKING:
    from augment.imaging.digests import ImageHash
    from augment.rerun.state import SourceCache, Stamp
    from augment.stages.duplicates import SourceHasher

LABEL_FILE_SUFFIXES = (".csv", ".jsonl")


class SourceListing(Protocol):
    """SRC as a store lists it (augment/stores/listed.py): ingested from the listing, each
    source read once through the store, with no local copy of SRC."""

    hashes: dict[str, ImageHash]  # sha256 -> pHash, taken from the same read

    def ingest(
        self, root: Path, pattern: re.Pattern[str] | None, max_pixels: int, phase: Phase | None
    ) -> Dataset: ...


# Set by a store run around the run it makes: `ingest` then reads SRC from the listing.
listed_source: ContextVar[SourceListing | None] = ContextVar("listed_source", default=None)


def ingest(
    src: Path,
    group_by: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache: SourceCache | None = None,
    phase: Phase | None = None,
    columns: tuple[str | None, str | None] = (None, None),
    hasher: SourceHasher | None = None,
) -> Dataset:
    """Read SRC: a folder of class folders, or a labels file (`path,label[,group]`).

    With a `cache` (see augment/state.py), a source whose stamp is unchanged since an
    earlier run is not read again: a rerun costs one `stat` per source. `phase` hears of
    the sources read ("reading"). `columns`: a labels file's path and label columns, when
    not the first of the usual names it has (see augment/stages/labels_file.py). `hasher`
    is given the bytes of each source read, for its near-duplicate hash.
    """
    pattern = _compile_group_by(group_by)
    listing = listed_source.get()
    if listing is not None:
        return listing.ingest(src.resolve(), pattern, max_pixels, phase)
    if not src.exists():
        raise DatasetError(f"source {src} does not exist")
    layout = detect_layout(src)
    if layout is not None:  # an annotated layout (YOLO, COCO): see augment/annotations/
        return _ingest_annotated(src, layout, pattern, max_pixels, cache, hasher)
    if src.is_file():
        if src.suffix.lower() not in LABEL_FILE_SUFFIXES:
            raise DatasetError(f"source {src} is a file but not a labels file (.csv or .jsonl)")
        root = src.parent.resolve()
        dataset = Dataset(root=root, kind="labels")
        # Streamed (it may list millions of rows), its length known from a first pass.
        listed: LabelRows | list[Row] = read_labels_file(src, dataset, columns)
        folders: FolderCheck | None = FolderCheck(root)
    else:
        root = src.resolve()
        dataset = Dataset(root=root, kind="folders")
        # Names only, listed first: the total a progress bar needs.
        listed = list(_walk_class_folders(root, dataset, split_folders(root)))
        folders = None
    advance = phase("reading", len(listed)) if phase is not None else None
    for rel, label, group in listed:
        original = _read_original(
            root, rel, label, group, pattern, max_pixels, dataset, cache, folders, hasher
        )
        if original is not None:
            dataset.originals.append(original)
        if advance is not None:
            advance(1)
    return sorted_and_found(dataset, str(src))


def sorted_and_found(dataset: Dataset, where: str) -> Dataset:
    """The originals in path order, or a clear error when a source gave none (the local
    walk's and a store listing's alike)."""
    dataset.originals.sort(key=lambda o: o.path)
    if not dataset.originals:
        raise DatasetError(
            f"no usable images in {where}"
            + (f" ({len(dataset.rejected)} files rejected)" if dataset.rejected else "")
            + "; expected SRC/<class>/<image> or a labels file with path,label columns"
        )
    return dataset


def _ingest_annotated(
    src: Path,
    layout: str,
    pattern: re.Pattern[str] | None,
    max_pixels: int,
    cache: SourceCache | None,
    hasher: SourceHasher | None = None,
) -> Dataset:
    """Every listed image read as any source is, with its annotation checked against its
    size: a bad box or class rejects that image, with the reason."""
    found = read_annotated(src, layout)
    root = src.resolve()
    task = "segmentation" if layout == "masks" else "detection"
    dataset = Dataset(root=root, kind=layout, task=task, names=found.names)
    dataset.rejected.extend(Rejected(p, "label file without an image") for p in found.orphans)
    for listed in found.listed:
        original = _read_original(
            root, listed.image, "", None, pattern, max_pixels, dataset, cache, hasher=hasher
        )
        if original is None:
            continue
        try:
            annotation = finish(listed, original.width, original.height)
        except AnnotationProblem as exc:
            dataset.rejected.append(Rejected(listed.image, str(exc)))
            continue
        if layout == "masks":  # the mask is the annotation; its objects, each class's extent
            annotation = replace(annotation, mask=annotation.file)
        label = dominant_class(annotation.objects)
        dataset.originals.append(replace(original, label=label, annotation=annotation))
    dataset.originals.sort(key=lambda o: o.path)
    given = {o.path: o.annotation.split for o in dataset.originals if o.annotation}
    if given and all(given.values()):  # images/train, images/val...: the source's own split
        dataset.given_splits = {path: split for path, split in given.items() if split}
    if not dataset.originals:
        raise DatasetError(
            f"no usable images in the {layout} dataset {src} ({len(dataset.rejected)} rejected)"
        )
    return dataset


def _compile_group_by(group_by: str | None) -> re.Pattern[str] | None:
    if group_by is None:
        return None
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise DatasetError(
            f"--group-by {group_by!r} is not a valid regular expression: {exc}"
        ) from exc


def group_of(rel_path: str, pattern: re.Pattern[str] | None) -> str:
    """The group key of a path: the regex's first group (or whole match); else the path."""
    if pattern is None:
        return rel_path
    match = pattern.search(rel_path)
    if match is None:
        return rel_path
    return match.group(1) if match.groups() else match.group(0)


def _is_hidden(name: str) -> bool:
    # __MACOSX holds the resource forks a zip made on a Mac carries along: never data.
    return name.startswith(".") or name == "__MACOSX"


def split_folders(root: Path) -> dict[str, str]:
    """SRC's split folders (folder name -> split) when SRC is already split: every visible
    folder at its top is named train, val, valid, validation or test (any case), and one of
    them is train. Else empty: the top folders are the classes."""
    try:
        tops = [e.name for e in os.scandir(root) if e.is_dir() and not _is_hidden(e.name)]
    except OSError:
        return {}
    splits = {name: SPLIT_NAMES.get(name.lower(), "") for name in tops}
    if not splits or not all(splits.values()) or "train" not in splits.values():
        return {}
    return splits


def _walk_class_folders(
    root: Path, dataset: Dataset, splits: dict[str, str]
) -> Iterator[tuple[str, str, str | None]]:
    def unreadable(exc: OSError) -> None:
        # os.walk would skip a folder it cannot list without a word: its images would be
        # lost silently.
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        dataset.rejected.append(
            Rejected(f"{_printable(rel)}/", f"cannot read folder: {exc.strerror or exc}")
        )

    # followlinks=False: a symlinked folder is never entered, so link loops cannot hang us.
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        for name in sorted(d for d in dirnames if not _is_hidden(d) and (here / d).is_symlink()):
            dataset.rejected.append(
                Rejected(
                    _printable((rel_dir / name).as_posix()) + "/",
                    "symbolic link to a folder: not followed (copy the folder in instead)",
                )
            )
        dirnames[:] = sorted(
            d for d in dirnames if not _is_hidden(d) and not (here / d).is_symlink()
        )
        depth = 2 if splits else 1  # the class folders' depth
        if len(rel_dir.parts) == depth and not _has_visible_file(here):
            dataset.rejected.append(
                Rejected(f"{_printable(rel_dir.as_posix())}/", "empty class folder: class left out")
            )
        prefix = "" if not rel_dir.parts else rel_dir.as_posix() + "/"
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            rel = prefix + name  # a string join: pathlib's costs a no-op rerun ~10 us a file
            if not _is_utf8(rel):
                dataset.rejected.append(
                    Rejected(_printable(rel), "file name is not valid UTF-8: rename it")
                )
                continue
            if len(rel_dir.parts) < depth:
                expected = "SRC/<split>/<class>/<image>" if splits else "SRC/<class>/<image>"
                dataset.rejected.append(
                    Rejected(rel, f"not inside a class folder (expected {expected})")
                )
                continue
            if splits:
                dataset.given_splits[rel] = splits[rel_dir.parts[0]]
            yield rel, rel_dir.parts[depth - 1], None


def _has_visible_file(folder: Path) -> bool:
    for _, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        if any(not _is_hidden(f) for f in filenames):
            return True
    return False


def _is_utf8(name: str) -> bool:
    # os.walk hands undecodable bytes back as lone surrogates; they cannot be written to the
    # manifest (UTF-8 JSON) or a metadata CSV, so such a name is refused up front.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """The name as the user's `ls` would escape it (`bad-\xff.jpg`), fit for the manifest."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _read_original(
    root: Path,
    rel: str,
    label: str,
    group: str | None,
    pattern: re.Pattern[str] | None,
    max_pixels: int,
    dataset: Dataset,
    cache: SourceCache | None = None,
    folders: FolderCheck | None = None,
    hasher: SourceHasher | None = None,
) -> Original | None:
    """The listed file `rel` as an Original, or None with the reason in `dataset.rejected`.
    With a `cache`, a file whose stamp vouches for it is not read. A labels file's rows are
    checked for links out of SRC by `folders`; `hasher` is given the bytes read."""
    # Joined as a string, and a Path made only for a source that is read: pathlib's costs
    # a no-op rerun ~10 us a source.
    full = os.path.join(root, rel)
    found = _locate(root, rel, full, dataset, folders)
    if found is None:
        return None
    group = group or group_of(rel, pattern)
    before: Stamp | None = None
    if cache is not None:
        # Taken before reading (see SourceCache.remember); a link's is its target's.
        st, linked = found
        before = cache.stamp(Path(full)) if st is None or linked else cache.stamp_from(st)
        cached = cache.lookup(rel, before, label, group, max_pixels)
        if isinstance(cached, Rejected):  # the same bytes, not an image: the same reason
            dataset.rejected.append(cached)
            return None
        if cached is not None:
            return cached
    return _read_bytes(rel, label, group, Path(full), max_pixels, dataset, cache, before, hasher)


# Made once: a labels file may list millions of files that are no image.
_NO_IMAGE_EXTENSION = f"not an image file extension ({', '.join(sorted(IMAGE_EXTENSIONS))})"


def _locate(
    root: Path, rel: str, full: str, dataset: Dataset, folders: FolderCheck | None = None
) -> tuple[os.stat_result | None, bool] | None:
    """The file's lstat (None: reading it will say why) and whether it is a link, or None,
    with the reason rejected, for a file that is no image by name or lies outside SRC."""
    reject = dataset.rejected.append
    if os.path.splitext(rel)[1].lower() not in IMAGE_EXTENSIONS:
        reject(Rejected(rel, _NO_IMAGE_EXTENSION))
        return None
    try:
        # One lstat per source: on a rerun it is also the stamp that vouches for the file.
        st: os.stat_result | None = os.lstat(full)
    except FileNotFoundError:  # said now: a labels file may list millions of missing files
        reject(Rejected(rel, "file not found"))
        return None
    except OSError:
        st = None
    linked = st is not None and stat.S_ISLNK(st.st_mode)
    # A labels file's row may go through a linked folder: `folders` resolves each folder
    # once. The folder walk never enters a linked folder, so there only a linked file needs
    # resolving (a resolve per source is a good part of a no-op rerun's time).
    if folders is not None:
        refused = folders.refusal(rel, full, linked)
    elif dataset.kind == "folders" and not linked:
        refused = ""
    else:
        refused = FolderCheck(root).refusal(rel, full, linked=True)
    if refused:
        reject(Rejected(rel, refused))
        return None
    return st, linked


def _read_bytes(
    rel: str,
    label: str,
    group: str,
    path: Path,
    max_pixels: int,
    dataset: Dataset,
    cache: SourceCache | None,
    before: Stamp | None,
    hasher: SourceHasher | None = None,
) -> Original | None:
    """Read the file and its image header: its sha256, real format and size."""
    reject = dataset.rejected.append
    try:
        data = read_regular_file(path, max_source_bytes(max_pixels))
    except MemoryError:
        reject(Rejected(rel, "not enough memory to read it", retry=True))
        return None
    except NotRegularFile as exc:
        reject(Rejected(rel, str(exc)))
        return None
    except FileNotFoundError:
        reject(Rejected(rel, "file not found"))
        return None
    except IsADirectoryError:
        reject(Rejected(rel, "a folder, not an image file"))
        return None
    except OSError as exc:
        reject(Rejected(rel, f"cannot read: {exc.strerror or exc}"))
        return None
    # Imported here, on the first source that must be read: a rerun that changes nothing
    # does not load Pillow and numpy (see augment/defaults.py).
    from augment.imaging.codec import open_image

    try:
        with open_image(data, max_pixels) as img:
            fmt, (width, height) = img.format or "unknown", img.size
    except TooManyPixels as exc:  # this run's limit: a run with another may take it
        reject(Rejected(rel, str(exc)))
        return None
    except UnreadableImage as exc:
        reject(Rejected(rel, str(exc)))
        if cache is not None:
            cache.remember_rejected(rel, before, path, str(exc))
        return None
    original = Original(
        path=rel,
        label=label,
        group=group,
        sha256=sha256_bytes(data),
        format=fmt,
        width=width,
        height=height,
    )
    if cache is not None:
        cache.remember(rel, before, path, original)
    if hasher is not None:
        hasher.add(original.sha256, data)
    return original


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegularFile(OSError):
    """A FIFO, device or socket where an image file was expected."""


def read_regular_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file. Anything else is never read: a FIFO would block the run
    forever, a device could stream without end. Checked before opening (a device is not
    even opened), and again on the open file, opened non-blocking, in case it was swapped.
    A file over `max_bytes` is not read either (NotRegularFile says why)."""
    _check_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        _check_regular(path, st.st_mode)
        if max_bytes is not None and st.st_size > max_bytes:
            raise NotRegularFile(
                f"{st.st_size:,} bytes, more than any image within --max-pixels can take "
                f"({max_bytes:,}): not read"
            )
        return f.read()


def max_source_bytes(max_pixels: int) -> int:
    """The largest file an image within `max_pixels` can be: 16-bit RGBA uncompressed, with
    room for metadata (a file larger is no image the run could use, however it is padded)."""
    return max_pixels * 8 + (64 << 20)


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise NotRegularFile(f"{kind}, not an image file: not read")
