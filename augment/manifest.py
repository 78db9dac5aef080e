"""The output's records: `manifest.jsonl` (one record per output file), `augment.json`
(the run header), `metadata.csv` per split, and the journal that makes runs resumable.

Everything here is written in a canonical order (records sorted by path, keys in a fixed
order, no timestamps) so the same run always produces the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.errors import ManifestError
from augment.writer import write_if_changed, write_text_atomic

MANIFEST_NAME = "manifest.jsonl"
HEADER_NAME = "augment.json"
STATE_DIR = ".augment"
JOURNAL_DIR = f"{STATE_DIR}/journal"
HEADER_FORMAT = "augment-output/1"

Record = dict[str, Any]


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_manifest(out: Path, records: Iterable[Record]) -> None:
    lines = [dumps(r) for r in sorted(records, key=lambda r: r["path"])]
    write_if_changed(out / MANIFEST_NAME, "".join(line + "\n" for line in lines).encode())


def read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path} line {n}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise ManifestError(f"{path} line {n}: a record needs a 'path'")
        records.append(record)
    return records


def read_manifest(out: Path) -> list[Record]:
    return read_jsonl(out / MANIFEST_NAME)


def write_header(out: Path, header: Mapping[str, Any]) -> None:
    text = json.dumps(header, indent=2, ensure_ascii=False) + "\n"
    write_if_changed(out / HEADER_NAME, text.encode())


def read_header(out: Path) -> dict[str, Any]:
    path = out / HEADER_NAME
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist: not an augment output") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not a readable augment header: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
        raise ManifestError(f"{path} is not an augment header (format {HEADER_FORMAT!r})")
    return header


def write_journal(out: Path, shard_id: str, records: Sequence[Record]) -> None:
    """Written after a shard's files: its presence means the shard is done (resume unit)."""
    text = "".join(dumps(r) + "\n" for r in records)
    write_text_atomic(out / JOURNAL_DIR / f"{shard_id}.jsonl", text)


def read_journal(out: Path) -> list[Record]:
    folder = out / JOURNAL_DIR
    records: list[Record] = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            try:
                records.extend(read_jsonl(path))
            except ManifestError:
                continue  # an unreadable journal only means that shard is redone
    return records


def clear_journal(out: Path) -> None:
    shutil.rmtree(out / JOURNAL_DIR, ignore_errors=True)


SOFT_LABEL_PREFIX = "p_"


def write_metadata_csv(
    out: Path, split: str, records: Iterable[Record], soft_classes: Sequence[str] = ()
) -> None:
    """`file_name,label` per split, the form Hugging Face `imagefolder` reads.

    With `soft_classes` (a run that mixes images), one more column per class, `p_<class>`,
    holds the image's probability of that class: the soft label a trainer can read without
    the manifest. Unmixed images get 1 in their own class's column, 0 elsewhere. Every split
    gets the same columns, as `imagefolder` needs.
    """
    prefix = f"{split}/"
    rows = []
    for r in records:
        if not r["path"].startswith(prefix):
            continue
        row = [r["path"][len(prefix) :], r["label"]]
        probs = r.get("soft_label") or {r["label"]: 1.0}
        row.extend(_probability(probs.get(c, 0.0)) for c in soft_classes)
        rows.append(row)
    rows.sort()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file_name", "label", *(SOFT_LABEL_PREFIX + c for c in soft_classes)])
    writer.writerows(rows)
    write_if_changed(out / split / "metadata.csv", buf.getvalue().encode())


def _probability(value: float) -> str:
    # Always a float literal ("1.0", not "1"): a loader that infers column types per file
    # (Hugging Face imagefolder) must see the same type in every split.
    return repr(float(value))
