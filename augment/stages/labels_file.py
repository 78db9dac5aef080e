"""Reading a labels file: CSV or JSONL rows of an image's path, its label, and optionally
its group and split, paths relative to the file's folder. A row that cannot be used is kept
as a `Rejected` entry with the reason; a file that cannot be read as one is an error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

from augment.bounded import loads_json
from augment.defaults import SPLIT_NAMES
from augment.errors import DatasetError
from augment.model import Dataset, Rejected

# A labels file's columns: the first of these in the header is the image's path (the names
# Hugging Face, Kaggle and torchvision exports use), then its label.
PATH_COLUMNS = ("path", "file_name", "filename", "image", "image_path", "file")
LABEL_COLUMNS = ("label", "class", "category")


def read_labels_file(
    path: Path, dataset: Dataset, columns: tuple[str | None, str | None]
) -> list[tuple[str, str, str | None]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"labels file {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read labels file {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path, text, columns)
    else:
        rows = _csv_rows(path, text, columns)
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


def _csv_rows(
    path: Path, text: str, columns: tuple[str | None, str | None]
) -> Iterator[tuple[int, dict[str, str]]]:
    # newline="": the csv module splits lines itself, so a lone \r ends a line as it does
    # in the file (old Mac exports) instead of being an error inside a field.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = [f.strip().lower() for f in reader.fieldnames or []]
    except csv.Error as exc:
        raise DatasetError(f"labels file {path} line 1: {exc}") from exc
    fields = _canonical_columns(path, fields, columns)
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


def _jsonl_rows(
    path: Path, text: str, columns: tuple[str | None, str | None]
) -> Iterator[tuple[int, dict[str, str]]]:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"labels file {path} line {line_no}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"labels file {path} line {line_no}: expected a JSON object")
        row = {k.strip().lower(): str(v) for k, v in row.items() if v is not None}
        names = _canonical_columns(path, list(row), columns)
        yield line_no, dict(zip(names, row.values(), strict=True))
