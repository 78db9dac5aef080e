"""Reading a labeled source dataset: a class-folder tree or a CSV/JSONL labels file.

Every file is read once here to take its sha256 (the identity that names, seeds and caches
derive from) and its real format from the header. Pixels are decoded later, in the workers.
A file that cannot be used is kept as a `Rejected` entry with the reason: the run goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from augment.errors import DatasetError
from augment.imageio import IMAGE_EXTENSIONS, sha256_bytes

if TYPE_CHECKING:
    from augment.state import SourceCache

LABEL_FILE_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Original:
    """One source image, identified by its path relative to the dataset root."""

    path: str  # POSIX, relative to Dataset.root
    label: str
    group: str  # originals sharing a group are held out together
    sha256: str
    format: str  # what the bytes really are, per Pillow ("JPEG", "PNG", ...)
    width: int
    height: int


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


@dataclass
class Dataset:
    root: Path
    kind: str  # "folders" | "labels"
    originals: list[Original] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted({o.label for o in self.originals})


def ingest(src: Path, group_by: str | None = None, cache: SourceCache | None = None) -> Dataset:
    """Read SRC: a folder of class folders, or a labels file (`path,label[,group]`).

    With a `cache` (see augment/state.py), a source whose stamp is unchanged since an
    earlier run is not read again: a rerun costs one `stat` per source.
    """
    pattern = _compile_group_by(group_by)
    if not src.exists():
        raise DatasetError(f"source {src} does not exist")
    if src.is_file():
        if src.suffix.lower() not in LABEL_FILE_SUFFIXES:
            raise DatasetError(f"source {src} is a file but not a labels file (.csv or .jsonl)")
        root = src.parent.resolve()
        dataset = Dataset(root=root, kind="labels")
        entries = _read_labels_file(src, dataset)
    else:
        root = src.resolve()
        dataset = Dataset(root=root, kind="folders")
        entries = _walk_class_folders(root, dataset)

    for rel, label, group in entries:
        original = _read_original(root, rel, label, group, pattern, dataset, cache)
        if original is not None:
            dataset.originals.append(original)
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
    return name.startswith(".")


def _walk_class_folders(root: Path, dataset: Dataset) -> Iterator[tuple[str, str, str | None]]:
    # followlinks=False: a symlinked folder is never entered, so link loops cannot hang us.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        here = Path(dirpath)
        rel_dir = here.relative_to(root)
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            rel = (rel_dir / name).as_posix()
            if not rel_dir.parts:
                dataset.rejected.append(
                    Rejected(rel, "not inside a class folder (expected SRC/<class>/<image>)")
                )
                continue
            yield rel, rel_dir.parts[0], None


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
    for line_no, row in rows:
        rel, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        group = (row.get("group") or "").strip() or None
        where = f"{path.name} line {line_no}"
        if not rel or not label:
            dataset.rejected.append(Rejected(rel or where, f"{where}: empty path or label"))
            continue
        normal = os.path.normpath(rel).replace(os.sep, "/")
        if os.path.isabs(rel) or normal == ".." or normal.startswith("../"):
            dataset.rejected.append(
                Rejected(rel, f"{where}: path escapes the labels file's folder")
            )
            continue
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
    return entries


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "path" not in fields or "label" not in fields:
        raise DatasetError(
            f"labels file {path} needs a header with 'path' and 'label' columns "
            f"(and optionally 'group'); found {reader.fieldnames}"
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
        yield line_no, {k: str(v) for k, v in row.items() if v is not None}


def _read_original(
    root: Path,
    rel: str,
    label: str,
    group: str | None,
    pattern: re.Pattern[str] | None,
    dataset: Dataset,
    cache: SourceCache | None = None,
) -> Original | None:
    path = root / rel
    reject = dataset.rejected.append
    if Path(rel).suffix.lower() not in IMAGE_EXTENSIONS:
        reject(
            Rejected(rel, f"not an image file extension ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        )
        return None
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            reject(Rejected(rel, "symbolic link pointing outside the source folder"))
            return None
    group = group or group_of(rel, pattern)
    if cache is not None:
        cached = cache.lookup(rel, path)
        if cached is not None:
            return dataclasses.replace(cached, label=label, group=group)
        before = cache.stamp(path)  # taken before reading: see SourceCache.remember
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        reject(Rejected(rel, "file not found"))
        return None
    except OSError as exc:
        reject(Rejected(rel, f"cannot read: {exc.strerror}"))
        return None
    if not data:
        reject(Rejected(rel, "empty file (0 bytes)"))
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format or "unknown", img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reject(Rejected(rel, f"not a readable image: {exc}"))
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
