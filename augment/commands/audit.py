"""`augment audit`: is a split dataset free of leakage, and is it what its manifest says?

Five named checks; each finding names its check, a kind, the files involved and why:

1. `lineage` - from the manifest: train files are made only from train originals (every
   source of a mixed file too); no validation/test original, by path or by content, is a
   source of a train file; validation/test files are variant 0 with exactly one source; a
   source has one sha256 wherever it is named.
2. `exact-duplicates` - across splits, by decoded pixels (see `similarity`): identical
   pixels, or the same picture re-encoded (same size, PSNR over the threshold). A file that
   cannot be decoded cannot be cleared, so it is a finding here too.
3. `near-duplicates` - across splits, by perceptual hash (pHash) within a Hamming
   threshold, the mirror included; train variants are compared with held-out files too.
   Within one split nothing is compared: a train variant is meant to resemble its original.
4. `integrity` - every manifest file exists with its sha256, sits in its split's folder;
   no image in OUT is unlisted; `augment.json` and `metadata.csv` agree with the manifest.
5. `balance` - files per split and class; a class missing from a split is a finding.

Without a manifest (`audit_splits`: folders split by another tool) checks 2, 3 and 5 run.
A manifest or folder that cannot be read raises `ManifestError`/`DatasetError` (exit 2).
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from augment.commands.report import class_count_table
from augment.defaults import (
    DEFAULT_MAX_DISTANCE,
    IMAGE_EXTENSIONS,
    REENCODE_MIN_PSNR,
    default_workers,
)
from augment.errors import DatasetError, ManifestError, UnreadableImage
from augment.imaging.codec import decode
from augment.imaging.digests import ImageHash, sha256_file
from augment.imaging.similarity import (
    block_psnr,
    hamming_pairs,
    phash_rgb,
    pixel_digest,
)
from augment.layout import HEADER_NAME, MANIFEST_NAME
from augment.stages.holdout import SPLITS
from augment.stages.manifest import Record, read_header, read_manifest

CHECKS: dict[str, str] = {
    "lineage": "train files come only from train originals",
    "exact-duplicates": "no image in two splits (same decoded pixels)",
    "near-duplicates": "no near-duplicate image in two splits (perceptual hash)",
    "integrity": "files, hashes, manifest and augment.json agree",
    "balance": "every class present in every split",
}
FOLDER_CHECKS = ("exact-duplicates", "near-duplicates", "balance")
TRAIN = "train"


@dataclass(frozen=True)
class AuditOptions:
    max_distance: int = DEFAULT_MAX_DISTANCE  # pHash bits
    min_psnr: float = REENCODE_MIN_PSNR  # dB over 4x4 block means: "re-encoded" duplicates
    workers: int | None = None  # decoding threads; None: all cores


@dataclass(frozen=True)
class Finding:
    check: str
    kind: str
    message: str
    paths: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "kind": self.kind,
            "message": self.message,
            "paths": list(self.paths),
        }


@dataclass
class AuditReport:
    target: str
    mode: str  # "manifest" | "folders"
    checks: tuple[str, ...]
    options: AuditOptions
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> files
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def findings_of(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "clean": self.clean,
            "settings": {
                "max_distance": self.options.max_distance,
                "min_psnr": self.options.min_psnr,
            },
            "checks": [
                {
                    "name": name,
                    "description": CHECKS[name],
                    "passed": not self.findings_of(name),
                    "findings": [f.to_dict() for f in self.findings_of(name)],
                }
                for name in self.checks
            ],
            "sizes": {split: sum(counts.values()) for split, counts in self.counts.items()},
            "counts": self.counts,
        }


@dataclass(frozen=True)
class ImageFile:
    name: str  # as reported: relative to OUT, or "<split>:<path in its folder>"
    split: str
    label: str  # the class folder ("" when the file sits directly in the split folder)
    file: Path


# --------------------------------------------------------------------------- entry points


def audit_output(out: Path, options: AuditOptions | None = None) -> AuditReport:
    """Audit an `augment expand` output folder against its manifest: all five checks."""
    options = options or AuditOptions()
    if not out.is_dir():
        raise ManifestError(f"{out} is not a folder")
    header = read_header(out)
    records = read_manifest(out)
    for n, record in enumerate(records, start=1):
        _validate_record(record, n)
    splits = [s for s in SPLITS if (out / s).is_dir() or any(r["split"] == s for r in records)]
    files = [f for s in splits for f in _image_files(out / s, s, prefix=f"{s}/")]
    report = AuditReport(str(out), "manifest", tuple(CHECKS), options)
    report.findings += lineage_findings(records, header)
    report.findings += _duplicate_findings(files, [s for s in splits], options)
    report.findings += integrity_findings(out, records, header)
    report.counts, balance = balance_findings(files, splits)
    report.findings += balance
    return report


def audit_splits(splits: Mapping[str, Path], options: AuditOptions | None = None) -> AuditReport:
    """Audit folders split by another tool (`--split train=DIR ...`): checks 2, 3 and 5."""
    options = options or AuditOptions()
    if len(splits) < 2:
        raise DatasetError("give at least two splits to compare (--split train=DIR ...)")
    resolved: dict[str, Path] = {}
    for name, folder in splits.items():
        if not folder.is_dir():
            raise DatasetError(f"split {name}: {folder} is not a readable folder")
        here = folder.resolve()
        for other, there in resolved.items():
            if here == there or here.is_relative_to(there) or there.is_relative_to(here):
                raise DatasetError(f"splits {other} and {name} overlap ({folder})")
        resolved[name] = here
    files = [f for name, folder in splits.items() for f in _image_files(folder, name, f"{name}:")]
    report = AuditReport(
        ", ".join(f"{n}={p}" for n, p in splits.items()), "folders", FOLDER_CHECKS, options
    )
    report.findings += _duplicate_findings(files, list(splits), options)
    report.counts, balance = balance_findings(files, list(splits))
    report.findings += balance
    return report


# --------------------------------------------------------------------------- reading


def _validate_record(record: Record, n: int) -> None:
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


def _unreadable(exc: OSError) -> None:
    # A folder the audit cannot list would silently shrink a split: refuse to run instead.
    raise DatasetError(f"cannot read folder {exc.filename}: {exc.strerror}")


def _image_files(folder: Path, split: str, prefix: str) -> list[ImageFile]:
    """Image files under a split folder (hidden files and folders skipped), sorted."""
    found: list[ImageFile] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=_unreadable, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(folder)
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = (rel_dir / name).as_posix()
            label = rel_dir.parts[0] if rel_dir.parts else ""
            found.append(ImageFile(f"{prefix}{rel}", split, label, Path(dirpath) / name))
    return found


# --------------------------------------------------------------------------- 1. lineage


def lineage_findings(records: Sequence[Record], header: Mapping[str, Any]) -> list[Finding]:
    findings: list[Finding] = []

    def add(kind: str, message: str, *paths: str) -> None:
        findings.append(Finding("lineage", kind, message, paths))

    holdout = {h["path"]: h for h in header.get("holdout", []) if isinstance(h, dict)}
    held_out_path: dict[str, str] = {}  # source path -> its held-out split
    held_out_sha: dict[str, str] = {}  # source sha256 -> source path
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

    shas: dict[str, set[str]] = defaultdict(set)
    for h in holdout.values():
        if isinstance(h.get("sha256"), str):
            shas[h["path"]].add(h["sha256"])
    for r in records:
        path, split = r["path"], r["split"]
        for s in r["sources"]:
            shas[s["path"]].add(s["sha256"])
        if split != TRAIN:
            if r["variant"] != 0:
                add(
                    "held-out-variant",
                    f"{path}: a {split} file must be the original (variant 0), "
                    f"not variant {r['variant']}",
                    path,
                )
            if len(r["sources"]) != 1:
                add(
                    "held-out-sources",
                    f"{path}: a {split} file must have exactly one source, not {len(r['sources'])}",
                    path,
                )
            continue
        if not r["sources"]:
            add("no-source", f"{path}: a train file with no source", path)
        for s in r["sources"]:
            if s["path"] in held_out_path:
                add(
                    "held-out-source",
                    f"{path}: made from {held_out_path[s['path']]} original {s['path']}",
                    path,
                    s["path"],
                )
            elif s["sha256"] in held_out_sha:
                other = held_out_sha[s["sha256"]]
                add(
                    "held-out-source",
                    f"{path}: made from {s['path']}, which has the same sha256 as "
                    f"{held_out_path[other]} original {other}",
                    path,
                    other,
                )
            elif holdout and s["path"] not in holdout:
                add(
                    "unknown-source",
                    f"{path}: source {s['path']} is not an original in {HEADER_NAME}",
                    path,
                    s["path"],
                )
    for path, values in sorted(shas.items()):
        if len(values) > 1:
            add(
                "inconsistent-sha256",
                f"source {path} is recorded with {len(values)} different sha256 values",
                path,
            )
    return findings


# --------------------------------------------------------------------------- 2 + 3. duplicates


@dataclass(frozen=True)
class _Fingerprint:
    shape: tuple[int, ...]
    digest: str
    hash: ImageHash


def _decode_pixels(path: Path) -> np.ndarray:
    return decode(path.read_bytes()).pixels


def _try_fingerprint(path: Path) -> _Fingerprint | OSError | UnreadableImage:
    try:
        pixels = _decode_pixels(path)
    except (OSError, UnreadableImage) as exc:
        return exc
    return _Fingerprint(pixels.shape, pixel_digest(pixels), phash_rgb(pixels))


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _duplicate_findings(
    files: Sequence[ImageFile], splits: Sequence[str], options: AuditOptions
) -> list[Finding]:
    """Compare every file with every file of the *other* splits (never within a split)."""
    findings: list[Finding] = []
    prints: dict[int, _Fingerprint] = {}
    # Pixels are decoded once for the fingerprints and again only for the candidate pairs
    # that need a PSNR; the cache is local to this audit, so it never holds stale files.
    pixels = lru_cache(maxsize=64)(_decode_pixels)
    # Pillow and OpenCV release the GIL while decoding and resizing: threads use the cores.
    with ThreadPoolExecutor(max_workers=options.workers or default_workers()) as pool:
        fingerprints = list(pool.map(_try_fingerprint, (f.file for f in files)))
    for i, (f, result) in enumerate(zip(files, fingerprints, strict=True)):
        if isinstance(result, _Fingerprint):
            prints[i] = result
            continue
        message = f"{f.name}: cannot compare: {result}"
        findings.append(Finding("exact-duplicates", "unreadable", message, (f.name,)))
    order = {s: n for n, s in enumerate(splits)}
    seen: set[tuple[int, int]] = set()

    def pair(i: int, j: int) -> tuple[int, int]:
        # Report the earlier split (train first) first, whichever side found it.
        return (i, j) if order[files[i].split] <= order[files[j].split] else (j, i)

    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, fp in prints.items():
        by_digest[fp.digest].append(i)
    for members in by_digest.values():
        for a, b in combinations(members, 2):
            if files[a].split != files[b].split:
                i, j = pair(a, b)
                seen.add((i, j))
                findings.append(_exact(files[i], files[j], "identical decoded pixels"))

    indices = {s: [i for i in prints if files[i].split == s] for s in splits}
    for left_split, right_split in combinations(splits, 2):
        left, right = indices[left_split], indices[right_split]
        if not left or not right:
            continue
        direct = np.array([prints[i].hash.direct for i in left], dtype=np.uint64)
        other = np.array([prints[j].hash.direct for j in right], dtype=np.uint64)
        mirror = np.array([prints[j].hash.mirror for j in right], dtype=np.uint64)
        hits = [(a, b, d, False) for a, b, d in hamming_pairs(direct, other, options.max_distance)]
        hits += [(a, b, d, True) for a, b, d in hamming_pairs(direct, mirror, options.max_distance)]
        for a, b, distance, mirrored in sorted(hits, key=lambda h: (h[3], h[2], h[0], h[1])):
            i, j = pair(left[a], right[b])
            if (i, j) in seen:
                continue
            seen.add((i, j))
            findings.append(
                _near_or_reencoded(
                    files[i], files[j], prints[i], prints[j], distance, mirrored, options, pixels
                )
            )
    return sorted(findings, key=lambda f: (f.check, f.paths))


def _labels(a: ImageFile, b: ImageFile) -> str:
    """One picture filed under two classes is label noise as well as a leak: say so."""
    return "" if a.label == b.label else f"; filed as class {a.label!r} and {b.label!r}"


def _exact(a: ImageFile, b: ImageFile, why: str) -> Finding:
    return Finding(
        "exact-duplicates",
        "identical" if why.startswith("identical") else "re-encoded",
        f"{a.name} ({a.split}) and {b.name} ({b.split}): {why}{_labels(a, b)}",
        (a.name, b.name),
    )


def _near_or_reencoded(
    a: ImageFile,
    b: ImageFile,
    print_a: _Fingerprint,
    print_b: _Fingerprint,
    distance: int,
    mirrored: bool,
    options: AuditOptions,
    pixels: Callable[[Path], np.ndarray],
) -> Finding:
    shape_a, shape_b = print_a.shape, print_b.shape
    if not mirrored and shape_a == shape_b:
        quality = block_psnr(pixels(a.file), pixels(b.file))
        if quality >= options.min_psnr:
            return _exact(a, b, f"the same pixels re-encoded (PSNR {quality:.1f} dB)")
    what = "mirrored copies" if mirrored else "near duplicates"
    size = "" if shape_a == shape_b else f", sizes {_size(shape_a)} and {_size(shape_b)}"
    return Finding(
        "near-duplicates",
        "mirrored" if mirrored else ("resized" if size else "similar"),
        f"{a.name} ({a.split}) and {b.name} ({b.split}): {what} "
        f"(pHash {distance} bits apart{size}){_labels(a, b)}",
        (a.name, b.name),
    )


# --------------------------------------------------------------------------- 4. integrity


def integrity_findings(
    out: Path, records: Sequence[Record], header: Mapping[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []

    def add(kind: str, message: str, *paths: str) -> None:
        findings.append(Finding("integrity", kind, message, paths))

    root = out.resolve()
    listed = {r["path"] for r in records}
    for r in records:
        path = r["path"]
        target = out / path
        if not target.resolve().is_relative_to(root):
            add("outside", f"{path}: the manifest points outside the output folder", path)
            continue
        if path.split("/", 1)[0] != r["split"]:
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
    for f in _image_files(out, "", prefix=""):  # anywhere in OUT, not only split folders
        if f.name not in listed:
            add("unlisted", f"{f.name}: an image the manifest does not list", f.name)

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
    findings += _holdout_agrees(records, header)
    for split in sorted({r["split"] for r in records}):
        findings += _metadata_agrees(out, split, records)
    return findings


def _holdout_agrees(records: Sequence[Record], header: Mapping[str, Any]) -> list[Finding]:
    """Each held-out file's source is recorded in augment.json's holdout with that split,
    and every original augment.json lists (and did not reject) has files."""
    findings: list[Finding] = []
    holdout = {h.get("path"): h for h in header.get("holdout", []) if isinstance(h, dict)}
    rejected = {r.get("path") for r in header.get("rejected", []) if isinstance(r, dict)}
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
    for path in sorted(p for p in holdout if isinstance(p, str)):
        if path not in used and path not in rejected:
            findings.append(
                Finding(
                    "integrity",
                    "header-holdout",
                    f"{HEADER_NAME} lists original {path}, but no file in the manifest is made "
                    "from it",
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


# --------------------------------------------------------------------------- 5. balance


def balance_findings(
    files: Sequence[ImageFile], splits: Sequence[str]
) -> tuple[dict[str, dict[str, int]], list[Finding]]:
    """Files per split and class (by class folder, as the loaders read them)."""
    counts = {s: Counter(f.label for f in files if f.split == s) for s in splits}
    classes = sorted({c for split_counts in counts.values() for c in split_counts})
    findings: list[Finding] = []
    for split in splits:
        if not counts[split]:
            findings.append(Finding("balance", "empty-split", f"{split}: no image files"))
            continue
        for label in classes:
            if counts[split][label] == 0:
                others = ", ".join(s for s in splits if counts[s][label])
                findings.append(
                    Finding(
                        "balance",
                        "missing-class",
                        f"class {label!r} has no files in {split} (present in {others})",
                    )
                )
    return {s: dict(sorted(counts[s].items())) for s in splits}, findings


# --------------------------------------------------------------------------- the report


def format_report(report: AuditReport, limit: int = 20) -> str:
    """A readable report: one line per check, up to `limit` findings each, and the counts."""
    lines = [f"audit of {report.target} ({report.mode})"]
    for name in report.checks:
        found = report.findings_of(name)
        status = "ok  " if not found else "FAIL"
        extra = "" if not found else f": {len(found)} finding{'s' if len(found) > 1 else ''}"
        lines.append(f"  {status} {name} - {CHECKS[name]}{extra}")
        lines.extend(f"       [{f.kind}] {f.message}" for f in found[:limit])
        if len(found) > limit:
            lines.append(f"       ... and {len(found) - limit} more (see --json)")
    lines.extend(class_count_table(report.counts))
    lines.append(
        f"settings: near duplicates within {report.options.max_distance} bits of pHash; "
        f"re-encoded at PSNR >= {report.options.min_psnr:g} dB on 4x4 block means"
    )
    n = len(report.findings)
    lines.append("clean: no findings" if report.clean else f"{n} finding{'s' if n > 1 else ''}")
    return "\n".join(lines)
