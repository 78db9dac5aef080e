"""The output's records: `manifest.jsonl` (one record per output file), `augment.json`
(the run header), `metadata.csv` per split, and the journal that makes runs resumable.

Everything here is written in a canonical order (records sorted by path, keys in a fixed
order, no timestamps) so the same run always produces the same bytes. A run reads and
writes them a record at a time (`iter_jsonl`, `RecordFiles`): they grow with the dataset,
the run's memory must not.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.bounded import header_problem, loads_json
from augment.errors import ManifestError
from augment.files import ChangedFile, temp_path_for, write_text_atomic
from augment.layout import (
    CARD_NAME,
    CLASSES_NAME,
    HEADER_NAME,
    JOURNAL_DIR,
    MANIFEST_NAME,
    METADATA_NAME,
    STATE_DIR,
)

HEADER_FORMAT = "augment-output/1"
_text = json.encoder.encode_basestring  # a str as JSON, as json.dumps(ensure_ascii=False)

Record = dict[str, Any]


# json.dumps(record, ensure_ascii=False, separators=(",", ":")), without making an encoder
# each call or tracking containers for cycles (a record has none): called once per output.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def dumps(record: Mapping[str, Any]) -> str:
    return _ENCODE(record)


def iter_jsonl(path: Path) -> Iterator[Record]:
    """The records of a JSON-lines file, one line at a time (a manifest of any size)."""
    try:
        handle = path.open(encoding="utf-8", newline="\n")
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    with handle:
        lines = enumerate(handle, start=1)
        while True:
            try:
                n, line = next(lines)
            except StopIteration:
                return
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"cannot read {path}: {exc}") from exc
            if not line.strip():
                continue
            try:
                record = loads_json(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path} line {n}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("path"), str):
                raise ManifestError(f"{path} line {n}: a record needs a 'path'")
            yield record


def read_jsonl(path: Path) -> list[Record]:
    return list(iter_jsonl(path))


def read_manifest(out: Path) -> list[Record]:
    return read_jsonl(out / MANIFEST_NAME)


def write_header(out: Path, header: Mapping[str, Any]) -> None:
    """The header as `json.dumps(header, indent=2)` writes it; a value that is an iterator
    (the holdout: an entry per original) is written as a list, an entry at a time."""
    file = ChangedFile(out / HEADER_NAME)
    try:
        write_json(header, file.write)
    except BaseException:
        file.discard()
        raise
    file.commit()


def write_json(doc: Mapping[str, Any], write: Callable[[bytes], object]) -> None:
    """`doc` as `json.dumps(doc, indent=2)` and a newline, handed to `write` a piece at a
    time; a value that is an iterator is written as a list, an entry at a time."""
    for n, (key, value) in enumerate(doc.items()):
        write(f"{',' if n else '{'}\n  {_indented(key, 1)}: ".encode())
        if not isinstance(value, Iterator):
            write(_indented(value, 1).encode())
            continue
        opening = "["
        for item in value:
            write(f"{opening}\n    {_indented(item, 2)}".encode())
            opening = ","
        write(b"[]" if opening == "[" else b"\n  ]")
    write(b"\n}\n" if doc else b"{}\n")


def _indented(value: Any, level: int) -> str:
    if type(value) is dict and value and all(type(k) is type(v) is str for k, v in value.items()):
        # A flat entry of text (a rejection: there may be millions) in the bytes json.dumps
        # gives, without its indenting encoder, pure Python and eight times slower.
        inner = ",\n" + "  " * (level + 1)
        items = inner.join(f"{_text(k)}: {_text(v)}" for k, v in value.items())
        return "{" + inner[1:] + items + "\n" + "  " * level + "}"
    # JSON strings never hold a raw newline, so every newline is indentation's.
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + "  " * level)


# How `write_json` (and json.dumps with indent=2) lays out the header's rejections: the
# list's lines between these two, each entry over several lines. JSON text never holds a
# raw newline, so a line that is exactly one of these is the list's own.
_REJECTED_OPENS = '  "rejected": [\n'
_REJECTED_CLOSES = ("  ]\n", "  ],\n", "  ]")


def read_header(out: Path, rejected: bool = True) -> dict[str, Any]:
    """The run header. With `rejected` False its rejections are skipped unparsed (read as
    an empty list; `iter_rejected` reads them a few at a time): a run may reject millions
    of rows, and a rerun does not need them held."""
    path = out / HEADER_NAME
    try:
        text = path.read_text(encoding="utf-8") if rejected else _without_rejected(path)
        header = loads_json(text)
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist: not an augment output") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not a readable augment header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
        raise ManifestError(f"{path} is not an augment header (format {HEADER_FORMAT!r})")
    if problem := header_problem(header):  # the wrong shape (augment/bounded.py)
        raise ManifestError(f"{path} is not a readable augment header: {problem}")
    return header


def _without_rejected(path: Path) -> str:
    kept, skipping = [], False
    with path.open(encoding="utf-8", newline="\n") as lines:
        for line in lines:
            if skipping and line not in _REJECTED_CLOSES:
                continue
            skipping = line == _REJECTED_OPENS
            kept.append(line)
    return "".join(kept)


def iter_rejected(out: Path) -> Iterator[dict[str, str]]:
    """The header's rejections, an entry at a time, as `read_header` checks them."""
    path = out / HEADER_NAME
    try:
        with path.open(encoding="utf-8", newline="\n") as lines:
            entry: list[str] = []
            inside = False
            for line in lines:
                if not inside:
                    inside = line == _REJECTED_OPENS
                    continue
                if line in _REJECTED_CLOSES:
                    break
                entry.append(line)
                if line.startswith("    }"):  # an entry's last line
                    found = loads_json("".join(entry).rstrip().rstrip(","))
                    entry = []
                    if not isinstance(found, dict) or not all(
                        isinstance(found.get(f), str) for f in ("path", "reason")
                    ):
                        raise ManifestError(f"{path}: a rejection needs a path and a reason")
                    yield found
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not a readable augment header: {exc}") from exc


def write_journal(out: Path, shard_id: str, lines: Sequence[str]) -> None:
    """Written after a shard's files: its presence means the shard is done (resume unit).
    `lines` are its records, each as `dumps` encodes it."""
    text = "".join(line + "\n" for line in lines)
    write_text_atomic(out / JOURNAL_DIR / f"{shard_id}.jsonl", text)


def iter_journal(out: Path) -> Iterator[Record]:
    """The records of every finished shard of an unfinished run."""
    folder = out / JOURNAL_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            try:
                records = read_jsonl(path)  # one shard: a few dozen records
            except ManifestError:
                continue  # an unreadable journal only means that shard is redone
            yield from records


def clear_journal(out: Path) -> None:
    shutil.rmtree(out / JOURNAL_DIR, ignore_errors=True)


SOFT_LABEL_PREFIX = "p_"
CARD_MARKER = "Made by `augment expand`"  # a README.md holding it is augment's to rewrite


def _probability(value: float) -> str:
    # Always a float literal ("1.0", not "1"): a loader that infers column types per file
    # (Hugging Face imagefolder) must see the same type in every split.
    return repr(float(value))


class RecordFiles:
    """`manifest.jsonl` (a record per line) and each split's `metadata.csv`, written from
    records given one at a time in path order, so that no list of them is held. `commit`
    puts in place the files whose bytes changed.

    `metadata.csv` is written only with `soft_classes` (a run that mixes images): a
    `file_name,label` row per image, the form Hugging Face `imagefolder` reads, and one more
    column per class, `p_<class>`, the image's probability of that class: the soft label a
    trainer can read without the manifest. Unmixed images get 1 in their own class's
    column, 0 elsewhere. Every split gets the same columns, as `imagefolder` needs. Without
    soft labels there is none: `imagefolder` takes the labels from the class folders only
    when no split has a metadata file, and then gives them as a ClassLabel. Its temporaries
    are made in the state folder, not in the split's folder: one that only held outputs
    since removed as stale must be left empty.
    """

    def __init__(self, out: Path, splits: Sequence[str], soft_classes: Sequence[str] = ()) -> None:
        self._out = out
        self._soft_classes = soft_classes
        self._manifest = ChangedFile(out / MANIFEST_NAME)
        self._metadata: dict[str, ChangedFile] = {}
        self._rows: dict[str, Any] = {}
        for split in splits if soft_classes else ():
            temp = temp_path_for(out / STATE_DIR / f"{split}-metadata.csv")
            file = self._metadata[split] = ChangedFile(out / split / "metadata.csv", temp)
            self._rows[split] = csv.writer(_Encoded(file), lineterminator="\n")
            self._rows[split].writerow(
                ["file_name", "label", *(SOFT_LABEL_PREFIX + c for c in soft_classes)]
            )

    def add(self, line: str, path: str, label: str, soft_label: Mapping[str, float] | None) -> None:
        """One record: its manifest line, path, label and soft label."""
        self._manifest.write(line.encode() + b"\n")
        split, _, name = path.partition("/")
        rows = self._rows.get(split)
        if rows is not None:
            probs = soft_label or {label: 1.0}
            rows.writerow(
                [name, label, *(_probability(probs.get(c, 0.0)) for c in self._soft_classes)]
            )

    def commit(self, metadata: Collection[str], manifest: bool = True) -> None:
        """Put in place the `metadata.csv` of the splits in `metadata` (in split order),
        then the manifest; the others are left as they are."""
        try:
            for split, file in self._metadata.items():
                if split in metadata:
                    file.commit()
                else:
                    file.discard()
            if not self._soft_classes:  # an earlier mixing run's would hide the class labels
                for split in metadata:
                    (self._out / split / METADATA_NAME).unlink(missing_ok=True)
            if manifest:
                self._manifest.commit()
        finally:
            self.discard()

    def discard(self) -> None:
        for file in [*self._metadata.values(), self._manifest]:
            file.discard()


class _Encoded:
    """A text sink for csv.writer that hands UTF-8 bytes on."""

    def __init__(self, file: ChangedFile) -> None:
        self.file = file

    def write(self, text: str) -> None:
        self.file.write(text.encode())


def write_dataset_card(
    out: Path, classes: Sequence[str], splits: Sequence[str], soft_classes: Sequence[str] = ()
) -> None:
    """`classes.json` (the class names in index order) and the dataset card `README.md`,
    whose features make Hugging Face `load_dataset(OUT)` give `label` as a ClassLabel with
    every class's name in every split, even a split that lacks some class. A README.md
    augment did not write (in a folder used with --force) is left as it is, card-less."""
    import yaml  # the card's front matter; class names may hold anything YAML must quote

    _write_changed(out / CLASSES_NAME, json.dumps(list(classes), ensure_ascii=False) + "\n")
    names = {str(i): c for i, c in enumerate(classes)}

    def features() -> list[dict[str, Any]]:  # a fresh copy each time: no YAML aliases
        return [
            {"name": "image", "dtype": "image"},
            {"name": "label", "dtype": {"class_label": {"names": dict(names)}}},
            *({"name": SOFT_LABEL_PREFIX + c, "dtype": "float64"} for c in soft_classes),
        ]

    config = {
        "config_name": "default",
        "data_files": [{"split": s, "path": f"{s}/**"} for s in splits],
        "features": features(),
    }
    front = yaml.safe_dump(
        {"dataset_info": {"features": features()}, "configs": [config]},
        allow_unicode=True,
        sort_keys=False,
    )
    body = (
        "# Augmented image classification dataset\n\n"
        f"{CARD_MARKER}: held-out splits are preprocessed originals, train holds "
        "augmented variants. `manifest.jsonl` records every file's source and recipe; "
        f"`{CLASSES_NAME}` lists the classes in index order.\n"
    )
    card = out / CARD_NAME
    try:
        ours = not card.exists() or CARD_MARKER in card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        ours = False
    if ours:
        _write_changed(card, f"---\n{front}---\n\n{body}")


def _write_changed(path: Path, text: str) -> None:
    file = ChangedFile(path)
    file.write(text.encode())
    file.commit()
