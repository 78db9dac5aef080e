"""The checks `augment audit` reads from the manifest: `lineage` (train files come only from
train originals) and `integrity` (files, hashes, manifest, augment.json and metadata.csv
agree); and the record check that makes a malformed manifest an error, not a finding."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.commands.audit_annotations import is_annotated, split_folder
from augment.commands.audit_report import Finding, image_files
from augment.errors import ManifestError
from augment.imaging.digests import sha256_file
from augment.layout import HEADER_NAME, MANIFEST_NAME
from augment.stages.holdout import SPLITS
from augment.stages.manifest import Record, iter_rejected

TRAIN = "train"


def validate_record(record: Record, n: int) -> None:
    """A record the checks cannot read is a malformed manifest (exit 2), not a finding."""
    where = f"{MANIFEST_NAME} line {n} ({record.get('path')})"
    if record.get("split") not in SPLITS:
        raise ManifestError(f"{where}: 'split' must be one of {', '.join(SPLITS)}")
    for key in ("label", "sha256"):
        if not isinstance(record.get(key), str):
            raise ManifestError(f"{where}: '{key}' must be a string")
    if not isinstance(record.get("variant"), int):
        raise ManifestError(f"{where}: 'variant' must be an integer")
    sources = record.get("sources")
    if not isinstance(sources, list) or not all(
        isinstance(s, dict) and isinstance(s.get("path"), str) and isinstance(s.get("sha256"), str)
        for s in sources
    ):
        raise ManifestError(f"{where}: 'sources' must be a list of {{path, sha256}} objects")


# --------------------------------------------------------------------------- 1. lineage


def lineage_findings(records: Sequence[Record], header: Mapping[str, Any]) -> list[Finding]:
    holdout = {h["path"]: h for h in header.get("holdout", []) if isinstance(h, dict)}
    held_out_path, held_out_sha = _held_out_sources(records, holdout)
    findings: list[Finding] = []
    for r in records:
        if r["split"] != TRAIN:
            findings += _held_out_file_findings(r)
        else:
            findings += _train_file_findings(r, holdout, held_out_path, held_out_sha)
    findings += _sha256_findings(records, holdout)
    return findings


def _lineage(kind: str, message: str, *paths: str) -> Finding:
    return Finding("lineage", kind, message, paths)


def _held_out_sources(
    records: Sequence[Record], holdout: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], dict[str, str]]:
    """The held-out originals, from augment.json and the validation/test records: source
    path -> its held-out split, and source sha256 -> source path."""
    held_out_path: dict[str, str] = {}
    held_out_sha: dict[str, str] = {}
    for h in holdout.values():
        if h.get("split") in SPLITS and h["split"] != TRAIN:
            held_out_path[h["path"]] = h["split"]
            if isinstance(h.get("sha256"), str):
                held_out_sha[h["sha256"]] = h["path"]
    for r in records:
        if r["split"] != TRAIN:
            for s in r["sources"]:
                held_out_path.setdefault(s["path"], r["split"])
                held_out_sha.setdefault(s["sha256"], s["path"])
    return held_out_path, held_out_sha


def _held_out_file_findings(r: Record) -> list[Finding]:
    """A validation/test file is an original: variant 0, made from exactly one source."""
    path, split = r["path"], r["split"]
    findings: list[Finding] = []
    if r["variant"] != 0:
        findings.append(
            _lineage(
                "held-out-variant",
                f"{path}: a {split} file must be the original (variant 0), "
                f"not variant {r['variant']}",
                path,
            )
        )
    if len(r["sources"]) != 1:
        findings.append(
            _lineage(
                "held-out-sources",
                f"{path}: a {split} file must have exactly one source, not {len(r['sources'])}",
                path,
            )
        )
    return findings


def _train_file_findings(
    r: Record,
    holdout: Mapping[str, Any],
    held_out_path: Mapping[str, str],
    held_out_sha: Mapping[str, str],
) -> list[Finding]:
    """A train file is made only from train originals, by path and by content."""
    path = r["path"]
    findings: list[Finding] = []
    if not r["sources"]:
        findings.append(_lineage("no-source", f"{path}: a train file with no source", path))
    for s in r["sources"]:
        if s["path"] in held_out_path:
            message = f"{path}: made from {held_out_path[s['path']]} original {s['path']}"
            findings.append(_lineage("held-out-source", message, path, s["path"]))
        elif s["sha256"] in held_out_sha:
            other = held_out_sha[s["sha256"]]
            message = (
                f"{path}: made from {s['path']}, which has the same sha256 as "
                f"{held_out_path[other]} original {other}"
            )
            findings.append(_lineage("held-out-source", message, path, other))
        elif holdout and s["path"] not in holdout:
            message = f"{path}: source {s['path']} is not an original in {HEADER_NAME}"
            findings.append(_lineage("unknown-source", message, path, s["path"]))
    return findings


def _sha256_findings(
    records: Sequence[Record], holdout: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """A source has one sha256 wherever it is named (augment.json or any record)."""
    shas: dict[str, set[str]] = defaultdict(set)
    for h in holdout.values():
        if isinstance(h.get("sha256"), str):
            shas[h["path"]].add(h["sha256"])
    for r in records:
        for s in r["sources"]:
            shas[s["path"]].add(s["sha256"])
    return [
        _lineage(
            "inconsistent-sha256",
            f"source {path} is recorded with {len(values)} different sha256 values",
            path,
        )
        for path, values in sorted(shas.items())
        if len(values) > 1
    ]


# --------------------------------------------------------------------------- 4. integrity


def integrity_findings(
    out: Path, records: Sequence[Record], header: Mapping[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []

    def add(kind: str, message: str, *paths: str) -> None:
        findings.append(Finding("integrity", kind, message, paths))

    root = out.resolve()
    listed = {r["path"] for r in records}
    # A segmentation output's masks are its records' annotation files, not unlisted images.
    listed |= {r["annotation"]["file"] for r in records if isinstance(r.get("annotation"), dict)}
    for r in records:
        path = r["path"]
        target = out / path
        if not target.resolve().is_relative_to(root):
            add("outside", f"{path}: the manifest points outside the output folder", path)
            continue
        if path.split("/", 1)[0] != r["split"] and not _in_annotated_folder(path, r, header):
            add("wrong-folder", f"{path}: recorded as {r['split']} but not in {r['split']}/", path)
        if not target.is_file():
            add("missing", f"{path}: listed in the manifest but missing", path)
            continue
        try:
            actual = sha256_file(target)
        except OSError as exc:
            add("unreadable", f"{path}: cannot read: {exc.strerror}", path)
            continue
        if actual != r["sha256"]:
            add("sha256-mismatch", f"{path}: sha256 differs from the manifest's", path)
    for f in image_files(out, "", prefix=""):  # anywhere in OUT, not only split folders
        if f.name not in listed:
            add("unlisted", f"{f.name}: an image the manifest does not list", f.name)
    findings += header_findings(out, records, header)
    # Only a mixing run writes metadata.csv (its soft labels); any other leaves the labels
    # to the class folders, which Hugging Face reads only when no metadata file is there.
    # An annotated set (a mosaic mixes) has its labels in its annotation files instead.
    mixing = (header.get("recipe") or {}).get("spec", {}).get("mix")
    if mixing and not header.get("annotations"):
        for split in sorted({r["split"] for r in records}):
            findings += _metadata_agrees(out, split, records)
    return findings


def header_findings(
    out: Path, records: Sequence[Record], header: Mapping[str, Any]
) -> list[Finding]:
    """`augment.json` agrees with the manifest: counts, recipe, holdout (folders and shards).
    `header` is read without its rejections (`read_header(rejected=False)`): they are read
    from `out` a few at a time, only when an original without files needs them."""
    findings: list[Finding] = []

    def add(kind: str, message: str, *paths: str) -> None:
        findings.append(Finding("integrity", kind, message, paths))

    counts: dict[str, dict[str, int]] = {}
    for r in sorted(records, key=lambda r: (r["split"], r["label"])):
        counts.setdefault(r["split"], {}).setdefault(r["label"], 0)
        counts[r["split"]][r["label"]] += 1
    if header.get("counts") != counts:
        add("header-counts", f"{HEADER_NAME} counts differ from the manifest's records")
    fingerprint = (header.get("recipe") or {}).get("fingerprint")
    other_recipe = sorted(r["path"] for r in records if r.get("recipe") != fingerprint)
    if other_recipe:
        add(
            "header-recipe",
            f"{len(other_recipe)} records name another recipe than {HEADER_NAME} "
            f"(first: {other_recipe[0]})",
            *other_recipe[:1],
        )
    findings += _holdout_agrees(out, records, header)
    return findings


def _holdout_agrees(
    out: Path, records: Sequence[Record], header: Mapping[str, Any]
) -> list[Finding]:
    """Each held-out file's source is recorded in augment.json's holdout with that split,
    and every original augment.json lists (and did not reject) has files."""
    findings: list[Finding] = []
    holdout = {h.get("path"): h for h in header.get("holdout", []) if isinstance(h, dict)}
    used: set[str] = set()
    for r in records:
        for s in r["sources"]:
            used.add(s["path"])
            entry = holdout.get(s["path"])
            if r["split"] != TRAIN and entry is not None and entry.get("split") != r["split"]:
                findings.append(
                    Finding(
                        "integrity",
                        "header-holdout",
                        f"{r['path']}: a {r['split']} file, but {HEADER_NAME} holds its original "
                        f"{s['path']} in {entry.get('split')}",
                        (r["path"], s["path"]),
                    )
                )
    unused = {p for p in holdout if isinstance(p, str) and p not in used}
    if unused:  # rejected by the run (unreadable): no file is expected
        unused -= {r["path"] for r in iter_rejected(out) if r["path"] in unused}
    for path in sorted(unused):
        findings.append(
            Finding(
                "integrity",
                "header-holdout",
                f"{HEADER_NAME} lists original {path}, but no file in the manifest is made from it",
                (path,),
            )
        )
    return findings


def _metadata_agrees(out: Path, split: str, records: Iterable[Record]) -> list[Finding]:
    """Hugging Face `imagefolder` takes labels from metadata.csv: it must match the manifest."""
    name = f"{split}/metadata.csv"
    prefix = f"{split}/"
    expected = {(r["path"][len(prefix) :], r["label"]) for r in records if r["split"] == split}
    try:
        rows = list(csv.reader(io.StringIO((out / name).read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error):
        return [Finding("integrity", "metadata", f"{name}: missing or unreadable", (name,))]
    found = {(row[0], row[1]) for row in rows[1:] if len(row) >= 2}
    if found != expected:
        differ = len(found ^ expected)
        return [
            Finding(
                "integrity", "metadata", f"{name}: {differ} rows differ from the manifest", (name,)
            )
        ]
    return []


def _in_annotated_folder(path: str, record: Record, header: Mapping[str, Any]) -> bool:
    """An annotated output's images are in images/<split folder>/ (audit_annotations.py)."""
    return is_annotated(header) and path.startswith(split_folder(record["split"]) + "/")
