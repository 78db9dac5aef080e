"""Reading a labeled source dataset: a class-folder tree or a CSV/JSONL labels file.

Every file is read once here to take its sha256 (the identity that names, seeds and caches
derive from) and its real format from the header. Pixels are decoded later, in the workers.
A file that cannot be used is kept as a `Rejected` entry with the reason: the run goes on.
Hidden files and folders (`.DS_Store`, `.git`, a zip's `__MACOSX`) are skipped without a
word: they are the system's, not the dataset's. Symbolic links are never followed out of the
source folder, and a linked folder is never entered (so a link loop cannot hang the walk);
both are reported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from augment.defaults import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, SPLIT_NAMES
from augment.errors import DatasetError, TooManyPixels, UnreadableImage
from augment.imaging.digests import sha256_bytes
from augment.model import Dataset, Original, Phase, Rejected

if TYPE_CHECKING:
    from augment.rerun.state import SourceCache, Stamp

LABEL_FILE_SUFFIXES = (".csv", ".jsonl")
# A labels file's columns: the first of these in the header is the image's path (the names
# Hugging Face, Kaggle and torchvision exports use), then its label.
PATH_COLUMNS = ("path", "file_name", "filename", "image", "image_path", "file")
LABEL_COLUMNS = ("label", "class", "category")


def ingest(
    src: Path,
    group_by: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache: SourceCache | None = None,
    phase: Phase | None = None,
) -> Dataset:
    """Read SRC: a folder of class folders, or a labels file (`path,label[,group]`).

    With a `cache` (see augment/state.py), a source whose stamp is unchanged since an
    earlier run is not read again: a rerun costs one `stat` per source. `phase` hears of
    the sources read ("reading").
    """
    pattern = _compile_group_by(group_by)
    if not src.exists():
        raise DatasetError(f"source {src} does not exist")
    if src.is_file():
        if src.suffix.lower() not in LABEL_FILE_SUFFIXES:
            raise DatasetError(f"source {src} is a file but not a labels file (.csv or .jsonl)")
        root = src.parent.resolve()
        dataset = Dataset(root=root, kind="labels")
        entries: Iterable[tuple[str, str, str | None]] = _read_labels_file(src, dataset)
    else:
        root = src.resolve()
        dataset = Dataset(root=root, kind="folders")
        entries = _walk_class_folders(root, dataset, split_folders(root))

    listed = list(entries)  # names only: the total a progress bar needs
    advance = phase("reading", len(listed)) if phase is not None else None
    for rel, label, group in listed:
        original = _read_original(root, rel, label, group, pattern, max_pixels, dataset, cache)
        if original is not None:
            dataset.originals.append(original)
        if advance is not None:
            advance(1)
    dataset.originals.sort(key=lambda o: o.path)
    if not dataset.originals:
        raise DatasetError(
            f"no usable images in {src}"
            + (f" ({len(dataset.rejected)} files rejected)" if dataset.rejected else "")
            + "; expected SRC/<class>/<image> or a labels file with path,label columns"
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


def _read_labels_file(path: Path, dataset: Dataset) -> list[tuple[str, str, str | None]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"labels file {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc.strerror}") from exc
    rows = _jsonl_rows(path, text) if path.suffix.lower() == ".jsonl" else _csv_rows(path, text)
    entries: list[tuple[str, str, str | None]] = []
    seen: dict[str, str] = {}
    root = path.parent.resolve()
    for line_no, row in rows:
        rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        group = (row.get("group") or "").strip() or None
        where = f"{path.name} line {line_no}"
        if not rel or not label:
            dataset.rejected.append(Rejected(rel or where, f"{where}: empty path or label"))
            continue
        if "\x00" in rel:
            dataset.rejected.append(Rejected(repr(rel), f"{where}: path contains a NUL byte"))
            continue
        normal, refused = _relative_path(rel, root)
        if refused:
            dataset.rejected.append(Rejected(rel, f"{where}: {refused}"))
            continue
        split = (row.get("split") or "").strip()
        if split:
            if split.lower() not in SPLIT_NAMES:
                reason = f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}"
                dataset.rejected.append(Rejected(normal, f"{where}: {reason}"))
                continue
            dataset.given_splits[normal] = SPLIT_NAMES[split.lower()]
        if normal in seen:
            reason = (
                "duplicate row"
                if seen[normal] == label
                else f"listed again with another label ({seen[normal]!r} first)"
            )
            dataset.rejected.append(Rejected(normal, f"{where}: {reason}; first row kept"))
            continue
        seen[normal] = label
        entries.append((normal, label, group))
    if dataset.given_splits:  # a split column: every row needs its split
        for rel, _, _ in entries:
            if rel not in dataset.given_splits:
                reason = "empty split (other rows have one: train, validation or test)"
                dataset.rejected.append(Rejected(rel, f"{path.name}: {reason}"))
        entries = [e for e in entries if e[0] in dataset.given_splits]
    return entries


def _relative_path(rel: str, root: Path) -> tuple[str, str]:
    """The labels file's path `rel` relative to its folder `root`, and why it is refused
    (empty if it is not). An absolute path inside the folder is taken as relative to it."""
    if os.path.isabs(rel):
        try:
            rel = Path(rel).relative_to(root).as_posix()
        except ValueError:
            return rel, (
                f"absolute path outside the labels file's folder {root}: paths are read "
                "relative to the labels file (move the file next to the images, or list "
                "relative paths)"
            )
    normal = os.path.normpath(rel).replace(os.sep, "/")
    if normal == ".." or normal.startswith("../"):
        return normal, "path escapes the labels file's folder (it starts with ../)"
    return normal, ""


def _canonical_columns(fields: list[str]) -> list[str]:
    """The header with its path and label columns renamed `path` and `label` (the first
    of PATH_COLUMNS and LABEL_COLUMNS it has)."""
    renamed = list(fields)
    for wanted, names in (("path", PATH_COLUMNS), ("label", LABEL_COLUMNS)):
        if wanted in renamed:
            continue
        found = next((n for n in names if n in renamed), None)
        if found is not None:
            renamed[renamed.index(found)] = wanted
    return renamed


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    # newline="": the csv module splits lines itself, so a lone \r ends a line as it does
    # in the file (old Mac exports) instead of being an error inside a field.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = _canonical_columns([f.strip().lower() for f in reader.fieldnames or []])
    except csv.Error as exc:
        raise DatasetError(f"labels file {path} line 1: {exc}") from exc
    if "path" not in fields or "label" not in fields:
        separator = next((s for s in (";", "\t", "|") if any(s in f for f in fields)), None)
        raise DatasetError(
            f"labels file {path} needs a header with a path column "
            f"({', '.join(PATH_COLUMNS)}) and a label column ({', '.join(LABEL_COLUMNS)}), "
            f"optionally 'group' and 'split'; found {reader.fieldnames}"
            + (f" (columns are separated by commas, not {separator!r})" if separator else "")
        )
    reader.fieldnames = fields
    try:
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if isinstance(v, str)}
    except csv.Error as exc:
        raise DatasetError(f"labels file {path} line {reader.line_num}: {exc}") from exc


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"labels file {path} line {line_no}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"labels file {path} line {line_no}: expected a JSON object")
        row = {k.strip().lower(): str(v) for k, v in row.items() if v is not None}
        names = _canonical_columns(list(row))
        yield line_no, dict(zip(names, row.values(), strict=True))


def _read_original(
    root: Path,
    rel: str,
    label: str,
    group: str | None,
    pattern: re.Pattern[str] | None,
    max_pixels: int,
    dataset: Dataset,
    cache: SourceCache | None = None,
) -> Original | None:
    """The listed file `rel` as an Original, or None with the reason in `dataset.rejected`.
    With a `cache`, a file whose stamp vouches for it is not read."""
    # Joined as a string, and a Path made only for a source that is read: pathlib's costs
    # a no-op rerun ~10 us a source.
    full = os.path.join(root, rel)
    found = _locate(root, rel, full, dataset)
    if found is None:
        return None
    group = group or group_of(rel, pattern)
    before: Stamp | None = None
    if cache is not None:
        # Taken before reading (see SourceCache.remember); a link's is its target's.
        st, linked = found
        if st is None or linked:
            before = cache.stamp(Path(full))
        else:
            before = (st.st_size, st.st_mtime_ns, st.st_ino)
        cached = cache.lookup(rel, before, label, group, max_pixels)
        if isinstance(cached, Rejected):  # the same bytes, not an image: the same reason
            dataset.rejected.append(cached)
            return None
        if cached is not None:
            return cached
    return _read_bytes(rel, label, group, Path(full), max_pixels, dataset, cache, before)


def _locate(
    root: Path, rel: str, full: str, dataset: Dataset
) -> tuple[os.stat_result | None, bool] | None:
    """The file's lstat (None: reading it will say why) and whether it is a link, or None,
    with the reason rejected, for a file that is no image by name or lies outside SRC."""
    reject = dataset.rejected.append
    if os.path.splitext(rel)[1].lower() not in IMAGE_EXTENSIONS:
        reject(
            Rejected(rel, f"not an image file extension ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        )
        return None
    try:
        # One lstat per source: on a rerun it is also the stamp that vouches for the file.
        st: os.stat_result | None = os.lstat(full)
    except OSError:
        st = None
    linked = st is not None and stat.S_ISLNK(st.st_mode)
    try:
        # Resolving catches a linked file and, in a labels file, a path through a linked
        # folder: anything that lands outside the source folder is refused. The folder walk
        # never enters a linked folder, so there only a linked file needs resolving (a
        # resolve per source is a good part of a no-op rerun's time).
        if dataset.kind == "folders" and not linked:
            inside = True
        else:
            inside = Path(full).resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
        reject(Rejected(rel, "symbolic link loop"))
        return None
    if not inside:
        reject(Rejected(rel, "symbolic link pointing outside the source folder"))
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
) -> Original | None:
    """Read the file and its image header: its sha256, real format and size."""
    reject = dataset.rejected.append
    try:
        data = path.read_bytes()
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
    return original
