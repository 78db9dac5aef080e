"""Reading a labels file: CSV or JSONL rows of an image's path, its label, and optionally
its group and split, paths relative to the file's folder. A row that cannot be used is kept
as a `Rejected` entry with the reason; a file that cannot be read as one is an error.

A labels file can list millions of images, so it is streamed, never held: it is read twice,
once to count the rows and find the paths listed more than once (one bit per row, in a
table of fixed size), then again to hand each row on. Only the rows whose path may repeat
keep their path in memory. Paths are checked lexically; a folder a row goes through is
resolved once for all its rows (`FolderCheck`), not once per row.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from augment.bounded import loads_json
from augment.defaults import SPLIT_NAMES
from augment.errors import DatasetError
from augment.model import Dataset, Rejected

# A labels file's columns: the first of these in the header is the image's path (the names
# Hugging Face, Kaggle and torchvision exports use), then its label.
PATH_COLUMNS = ("path", "file_name", "filename", "image", "image_path", "file")
LABEL_COLUMNS = ("label", "class", "category")
# The table of paths seen in the first pass: bits, a power of two. Its size bounds the
# memory a labels file costs, whatever its length; a fuller table only means more rows kept
# for the exact comparison in the second pass.
_MIN_SEEN_BITS, _MAX_SEEN_BITS = 1 << 16, 1 << 27

Row = tuple[str, str, str | None]  # path relative to the labels file's folder, label, group


@dataclass(slots=True)
class _Row:
    """One row as read: where it is, and the path, label, group and split it gives (or why
    it is refused)."""

    line_no: int
    path: str
    label: str
    group: str | None
    split: str
    refused: str  # "" when the row is usable


@dataclass
class LabelRows:
    """A labels file's usable rows, in file order, read as they are iterated. `len` is
    their count from the first pass (rows listed twice included). Rows refused while
    iterating go to `dataset.rejected`; a split column fills `dataset.given_splits`."""

    path: Path
    dataset: Dataset
    columns: tuple[str | None, str | None]
    count: int = 0
    has_splits: bool = False
    # The first pass's usable rows (count, sum of their paths' hashes) and the hashes seen
    # more than once; the second pass must meet the same rows.
    _fingerprint: tuple[int, int] = (0, 0)
    _repeated: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Row]:
        first_label: dict[str, str] = {}  # paths whose hash repeats: their first row's label
        usable = hashed = 0
        for row in _checked_rows(self.path, self.columns):
            if row.refused:
                self._reject(row, row.refused)
                continue
            key = hash(row.path)
            usable, hashed = usable + 1, (hashed + key) & _MASK
            if self.has_splits and not row.split:
                self._reject(row, "empty split (other rows have one: train, validation or test)")
                continue
            if key in self._repeated:
                first = first_label.get(row.path)
                if first is None:
                    first_label[row.path] = row.label
                else:
                    again = (
                        "duplicate row"
                        if first == row.label
                        else f"listed again with another label ({first!r} first)"
                    )
                    self._reject(row, f"{again}; first row kept")
                    continue
            if row.split:
                self.dataset.given_splits[row.path] = SPLIT_NAMES[row.split.lower()]
            yield row.path, row.label, row.group
        if (usable, hashed) != self._fingerprint:
            raise DatasetError(
                f"labels file {self.path} changed while it was read: run the command again"
            )

    def _reject(self, row: _Row, reason: str) -> None:
        where = f"{self.path.name} line {row.line_no}"
        self.dataset.rejected.append(Rejected(row.path or where, f"{where}: {reason}"))


_MASK = (1 << 64) - 1


def read_labels_file(
    path: Path, dataset: Dataset, columns: tuple[str | None, str | None]
) -> LabelRows:
    """The labels file's rows, after a first pass that checks the file reads as one (an
    error now, before any image is read) and finds the paths that may be listed twice."""
    rows = LabelRows(path, dataset, columns)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc.strerror}") from exc
    bits = min(max(_MIN_SEEN_BITS, 1 << (size * 2).bit_length()), _MAX_SEEN_BITS)
    seen = bytearray(bits >> 3)
    usable = hashed = 0
    for row in _checked_rows(path, columns):
        if row.refused:
            continue
        key = hash(row.path)
        usable, hashed = usable + 1, (hashed + key) & _MASK
        rows.has_splits = rows.has_splits or bool(row.split)
        slot = key & (bits - 1)
        if seen[slot >> 3] & (1 << (slot & 7)):
            rows._repeated.add(key)  # this path, or another with the same slot: compared later
        else:
            seen[slot >> 3] |= 1 << (slot & 7)
    rows._fingerprint = (usable, hashed)
    rows.count = usable
    return rows


def _checked_rows(path: Path, columns: tuple[str | None, str | None]) -> Iterator[_Row]:
    """Every row of the file, its path normalised and checked (see `_Row.refused`)."""
    root = path.parent.resolve()  # once: an absolute path inside it is taken as relative
    labels: dict[str, str] = {}  # one string per label, however many rows give it
    with _open_text(path) as text:
        try:
            if path.suffix.lower() == ".jsonl":
                raw = _jsonl_rows(path, text, columns)
            else:
                raw = _csv_rows(path, text, columns)
            for line_no, rel, label, group, split in raw:
                rel, label, split = rel.strip(), label.strip(), split.strip()
                row = _Row(line_no, rel, labels.setdefault(label, label), None, split, "")
                row.group = (group or "").strip() or None
                if not rel or not label:
                    row.refused = "empty path or label"
                elif "\x00" in rel:
                    row.path, row.refused = repr(rel), "path contains a NUL byte"
                else:
                    normal, row.refused = _relative_path(rel, root)
                    if not row.refused:  # refused: named as written
                        row.path = normal
                    if not row.refused and split and split.lower() not in SPLIT_NAMES:
                        row.refused = f"split {split!r} is not one of {', '.join(SPLIT_NAMES)}"
                yield row
        except UnicodeDecodeError as exc:
            raise DatasetError(f"labels file {path} is not UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise DatasetError(f"cannot read labels file {path}: {exc.strerror}") from exc


def _open_text(path: Path) -> IO[str]:
    """The file opened as UTF-8 text (a BOM skipped), if it is a regular file: a FIFO named
    labels.csv would block the run forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DatasetError(f"labels file {path} is not a regular file")
    # newline="": the csv module splits lines itself, so a lone \r ends a line as it does
    # in the file (old Mac exports) instead of being an error inside a field.
    return open(fd, encoding="utf-8-sig", newline="")


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
    # A path with no '.' or '..' part, doubled or trailing slash is its own normal form
    # (most rows): normalising it anyway is a good part of a row's cost.
    if "/." in rel or "//" in rel or rel.startswith(".") or rel.endswith("/"):
        rel = os.path.normpath(rel).replace(os.sep, "/")
    if rel == ".." or rel.startswith("../"):
        return rel, "path escapes the labels file's folder (it starts with ../)"
    return rel, ""


def _canonical_columns(
    path: Path, fields: list[str], columns: tuple[str | None, str | None]
) -> list[str]:
    """The header with its path and label columns renamed `path` and `label`: the ones
    `columns` names (--path-column, --label-column), else the first of PATH_COLUMNS and
    LABEL_COLUMNS it has."""
    renamed = list(fields)
    for wanted, names, given in (
        ("path", PATH_COLUMNS, columns[0]),
        ("label", LABEL_COLUMNS, columns[1]),
    ):
        if given is not None:
            given = given.strip().lower()
            if given not in renamed:
                raise DatasetError(
                    f"labels file {path} has no column {given!r} (--{wanted}-column); "
                    f"found {fields}"
                )
            if given != wanted and wanted in renamed:  # another column of that name: unused
                renamed[renamed.index(wanted)] = f"{wanted} (unused)"
            renamed[renamed.index(given)] = wanted
            continue
        if wanted in renamed:
            continue
        found = next((n for n in names if n in renamed), None)
        if found is not None:
            renamed[renamed.index(found)] = wanted
    return renamed


RawRow = tuple[int, str, str, str | None, str]  # line, path, label, group, split as written


def _csv_rows(
    path: Path, text: IO[str], columns: tuple[str | None, str | None]
) -> Iterator[RawRow]:
    reader = csv.reader(text)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise DatasetError(f"labels file {path} line 1: {exc}") from exc
    fields = _canonical_columns(path, [f.strip().lower() for f in header], columns)
    if "path" not in fields or "label" not in fields:
        separator = next((s for s in (";", "\t", "|") if any(s in f for f in fields)), None)
        raise DatasetError(
            f"labels file {path} needs a header with a path column "
            f"({', '.join(PATH_COLUMNS)}) and a label column ({', '.join(LABEL_COLUMNS)}), "
            f"optionally 'group' and 'split'; found {header or None}"
            + (f" (columns are separated by commas, not {separator!r})" if separator else "")
        )
    label_at, path_at = fields.index("label"), fields.index("path")
    group_at, split_at = (fields.index(c) if c in fields else -1 for c in ("group", "split"))
    try:
        for row in reader:
            if not row:  # a blank line
                continue
            n = len(row)  # a short row reads as empty in its missing columns
            yield (
                reader.line_num,
                row[path_at] if path_at < n else "",
                row[label_at] if label_at < n else "",
                row[group_at] if 0 <= group_at < n else None,
                row[split_at] if 0 <= split_at < n else "",
            )
    except csv.Error as exc:
        raise DatasetError(f"labels file {path} line {reader.line_num}: {exc}") from exc


def _jsonl_rows(
    path: Path, text: IO[str], columns: tuple[str | None, str | None]
) -> Iterator[RawRow]:
    for line_no, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"labels file {path} line {line_no}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"labels file {path} line {line_no}: expected a JSON object")
        row = {k.strip().lower(): str(v) for k, v in row.items() if v is not None}
        named = dict(zip(_canonical_columns(path, list(row), columns), row.values(), strict=True))
        get = named.get
        yield line_no, get("path", ""), get("label", ""), get("group"), get("split", "")


class FolderCheck:
    """Whether a labels file's row names a file inside the labels file's folder `root`,
    following links as reading it would: the row's folder is resolved once for all the rows
    in it, and only a file that is itself a link is resolved on its own. (The path was
    already checked lexically: no '..' out of the folder.)"""

    # Folders remembered at most: a file listing each image in its own folder costs one
    # resolve a row, as it did before, not memory without bound.
    MAX_FOLDERS = 100_000

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, str] = {}

    def refusal(self, rel: str, full: str, linked: bool) -> str:
        """Why the file `rel` (at `full`; `linked`: it is a symbolic link) is refused, or ''."""
        if linked:
            return self._refusal(full)
        folder = rel.rpartition("/")[0]
        found = self._folders.get(folder)
        if found is None:
            if len(self._folders) >= self.MAX_FOLDERS:
                self._folders.clear()
            found = self._folders[folder] = self._refusal(os.path.join(self.root, folder))
        return found

    def _refusal(self, full: str) -> str:
        try:
            inside = Path(full).resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
            return "symbolic link loop"
        return "" if inside else "symbolic link pointing outside the source folder"
