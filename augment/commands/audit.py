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
   A crop or shifted copy is searched for too, unless `AuditOptions.crop_search` is off
   (`--no-crop-search`): the report then says the check left it out.
4. `integrity` - every manifest file exists with its sha256, sits in its split's folder;
   no image in OUT is unlisted; `augment.json` and `metadata.csv` agree with the manifest.
5. `balance` - files per split and class; a class missing from a split is a finding.

Without a manifest (`audit_splits`: folders split by another tool) checks 2, 3 and 5 run.
A manifest or folder that cannot be read raises `ManifestError`/`DatasetError` (exit 2).

The checks live in `audit_manifest` (1 and 4) and `audit_duplicates` (2 and 3); the types
they share in `audit_report`. This module runs them and formats the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augment.commands.audit_annotations import (
    annotation_findings,
    held_out_findings,
    is_annotated,
    object_counts,
    split_folder,
)
from augment.commands.audit_duplicates import duplicate_findings
from augment.commands.audit_manifest import (
    header_findings,
    integrity_findings,
    lineage_findings,
    validate_record,
)
from augment.commands.audit_report import (
    ANNOTATIONS,
    CHECKS,
    FOLDER_CHECKS,
    SKIPPED,
    AuditOptions,
    AuditReport,
    Finding,
    ImageFile,
    image_files,
)
from augment.commands.report import class_count_table
from augment.errors import DatasetError, ManifestError
from augment.model import Phase
from augment.stages.holdout import SPLITS
from augment.stages.manifest import Record, read_header, read_manifest

# --------------------------------------------------------------------------- entry points


def audit_output(
    out: str | Path, options: AuditOptions | None = None, phase: Phase | None = None
) -> AuditReport:
    """Audit an `augment expand` output folder against its manifest: all five checks.
    `phase` hears of the images decoded ("decoding")."""
    out = Path(out)
    options = options or AuditOptions()
    if not out.is_dir():
        raise ManifestError(f"{out} is not a folder")
    header = read_header(out, rejected=False)  # maybe millions: read when needed
    records = read_manifest(out)
    for n, record in enumerate(records, start=1):
        validate_record(record, n)
    if "shards" in header:  # the images are in shards (--output-format webdataset|parquet)
        return _audit_shards(out, header, records, options, phase)
    annotated = is_annotated(header)  # detection: images/<split>/ (audit_annotations.py)
    folder = split_folder if annotated else str
    splits = [
        s for s in SPLITS if (out / folder(s)).is_dir() or any(r["split"] == s for r in records)
    ]
    files = [f for s in splits for f in image_files(out / folder(s), s, prefix=f"{folder(s)}/")]
    checks = [c for c in CHECKS if c != ANNOTATIONS or annotated]
    report = AuditReport(str(out), "manifest", tuple(checks), options)
    report.findings += lineage_findings(records, header)
    report.findings += duplicate_findings(files, [s for s in splits], options, phase)
    report.findings += integrity_findings(out, records, header)
    if annotated:
        report.findings += annotation_findings(out, records, header)
    return _held_out_and_balance(report, out, records, header, files, splits)


def _audit_shards(
    out: Path,
    header: dict[str, Any],
    records: Sequence[Record],
    options: AuditOptions,
    phase: Phase | None,
) -> AuditReport:
    """A sharded output: the same checks, its samples read from the shards (audit_shards.py)."""
    from augment.commands.audit_shards import scan_shards, validate_shard_fields

    for n, record in enumerate(records, start=1):
        validate_shard_fields(record, n)
    annotated = is_annotated(header)
    scan = scan_shards(out, records, header, phase)
    in_shards = {f.split for f in scan.files}
    splits = [s for s in SPLITS if s in in_shards or any(r["split"] == s for r in records)]
    # A shard named for no split (an unlisted `holdout-00000.tar`) is an integrity finding.
    files = [f for f in scan.files if f.split in splits]
    checks = [c for c in CHECKS if c != ANNOTATIONS or annotated]
    report = AuditReport(str(out), "shards", tuple(checks), options)
    report.findings += lineage_findings(records, header)
    report.findings += duplicate_findings(files, splits, options, phase)
    report.findings += scan.findings
    report.findings += header_findings(out, records, header)
    if annotated:
        report.findings += held_out_findings(records)
    return _held_out_and_balance(report, out, records, header, files, splits)


def _held_out_and_balance(
    report: AuditReport,
    out: Path,
    records: Sequence[Record],
    header: dict[str, Any],
    files: Sequence[ImageFile],
    splits: Sequence[str],
) -> AuditReport:
    """The checks both layouts end with: held-out objects against SRC's (`--source`), and
    the balance (objects per class for an annotated output, files per class otherwise)."""
    if is_annotated(header):
        if report.options.source is not None:
            from augment.commands.audit_held_out import held_out_object_findings

            source = report.options.source
            report.findings += held_out_object_findings(out, records, header, source)
        report.counts, balance = object_balance(records, splits)
    else:
        report.counts, balance = balance_findings(files, splits)
    report.findings += balance
    return report


def object_balance(
    records: Sequence[Record], splits: Sequence[str]
) -> tuple[dict[str, dict[str, int]], list[Finding]]:
    """An annotated output's balance: objects per split and class, from the records."""
    counts = object_counts(records)
    findings: list[Finding] = []
    classes = sorted({c for per_class in counts.values() for c in per_class})
    for split in splits:
        if not counts.get(split):
            findings.append(Finding("balance", "empty-split", f"{split}: no objects"))
            continue
        for label in classes:
            if not counts[split].get(label):
                findings.append(
                    Finding(
                        "balance", "missing-class", f"class {label!r} has no objects in {split}"
                    )
                )
    return {s: counts.get(s, {}) for s in splits}, findings


def audit_splits(
    splits: Mapping[str, Path], options: AuditOptions | None = None, phase: Phase | None = None
) -> AuditReport:
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
    files = [f for name, folder in splits.items() for f in image_files(folder, name, f"{name}:")]
    report = AuditReport(
        ", ".join(f"{n}={p}" for n, p in splits.items()), "folders", FOLDER_CHECKS, options
    )
    report.findings += duplicate_findings(files, list(splits), options, phase)
    report.counts, balance = balance_findings(files, list(splits))
    report.findings += balance
    return report


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
        left_out = "".join(f"; {SKIPPED[part]}" for part in report.skipped_of(name))
        lines.append(f"  {status} {name} - {CHECKS[name]}{left_out}{extra}")
        lines.extend(f"       [{f.kind}] {f.message}" for f in found[:limit])
        if len(found) > limit:
            lines.append(f"       ... and {len(found) - limit} more (see --json)")
    lines.extend(class_count_table(report.counts))
    lines.append(
        f"settings: near duplicates within {report.options.max_distance} bits of pHash; "
        f"re-encoded at PSNR >= {report.options.min_psnr:g} dB on 4x4 block means"
    )
    n = len(report.findings)
    verdict = "clean: no findings" if report.clean else f"{n} finding{'s' if n > 1 else ''}"
    # A clean audit that left a search out has not cleared what it left out: said last, where
    # a log is read.
    lines.append(verdict + "".join(f"; {SKIPPED[part]}" for part in report.skipped))
    return "\n".join(lines)
