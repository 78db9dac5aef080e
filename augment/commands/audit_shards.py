"""`augment audit` of a sharded output (`--output-format webdataset|parquet`): the shards read
back a sample at a time (augment/writers/read.py), as a consumer of `OUT/shards/` reads them.

`scan_shards` makes the `integrity` and `annotations` findings of the shards and gives every
sample a consumer would train on, as the image files the duplicate checks and the balance
take (`ImageFile`, its image read from the shard when they ask for it). Lineage and the
header's agreement come from the manifest, as for folders (audit.py runs them).

- `integrity`: every shard the manifest names is in `OUT/shards/`, committed (its records
  file ends with the commit line) with the size and sha256 the commit line gives; its records
  are the manifest's; every manifest sample is in its shard, under its key, with the image's
  sha256 and the record the manifest has (the tar's `<key>.json`, the Parquet row's columns);
  a sample or a shard the manifest does not list is a finding (a loader of the shards trains on
  it); a shard that cannot be read to its end (truncated, corrupt) is a finding.
- `annotations`: each sample's own annotation (from its JSON or its `annotation` column):
  boxes inside its image (the image's real size), of a known class; the same objects as the
  manifest's; a segmentation mask with the manifest's sha256.

A sample's split is its shard's (from the shard's name, as Hugging Face splits a folder of
shards): a held-out image copied into a train shard is a train image to the duplicate checks.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augment.commands.audit_annotations import (
    CHECK as ANNOTATIONS,
)
from augment.commands.audit_annotations import (
    MANIFEST,
    compare_objects,
    is_annotated,
    object_problems,
)
from augment.commands.audit_report import Finding, ImageFile
from augment.errors import DatasetError, ManifestError
from augment.imaging.digests import size_and_sha256_file
from augment.layout import MANIFEST_NAME
from augment.model import Phase
from augment.stages.manifest import Record
from augment.writers.read import (
    DamagedShard,
    Sample,
    TarMember,
    read_again,
    shard_commit,
    shard_samples,
)
from augment.writers.shards import SHARDS_DIR, records_name

INTEGRITY = "integrity"
_SHARD_NAME = re.compile(r"(?P<split>[a-z]+)-[0-9]{5}\.(tar|parquet)")


@dataclass
class ShardScan:
    files: list[ImageFile] = field(default_factory=list)  # every sample a consumer reads
    findings: list[Finding] = field(default_factory=list)


def validate_shard_fields(record: Record, n: int) -> None:
    """A sharded manifest's record names its shard and key (else exit 2, as validate_record)."""
    for key in ("shard", "key"):
        if not isinstance(record.get(key), str):
            raise ManifestError(
                f"{MANIFEST_NAME} line {n} ({record.get('path')}): '{key}' must be a string "
                "in a sharded output"
            )


def scan_shards(
    out: Path, records: Sequence[Record], header: Mapping[str, Any], phase: Phase | None = None
) -> ShardScan:
    """Every shard the manifest names and every shard in OUT/shards/, read once each."""
    listed: dict[str, dict[str, Record]] = {}
    scan = ShardScan()
    for r in records:
        shard = listed.setdefault(r["shard"], {})
        if r["key"] in shard:
            _add(scan, "duplicate-key", f"{r['path']}: key {r['key']} of {r['shard']} is also "
                 f"{shard[r['key']]['path']}'s", r["path"])  # fmt: skip
        shard[r["key"]] = r
    for name in sorted(n for n in listed if not _SHARD_NAME.fullmatch(n)):
        first = next(iter(listed.pop(name).values()))["path"]
        _add(scan, "bad-shard-name", f"{first}: its shard {name!r} is not a shard's name "
             f"({SHARDS_DIR}/<split>-<nnnnn>.tar|.parquet)", first)  # fmt: skip
    folder = out / SHARDS_DIR
    try:
        found = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    except FileNotFoundError:
        found = []
    except OSError as exc:  # a folder the audit cannot list would hide its shards
        raise DatasetError(f"cannot read folder {folder}: {exc.strerror}") from exc
    names = sorted(set(listed) | set(found))
    advance = phase("reading shards", len(names)) if phase is not None and names else None
    for name in names:
        _ShardCheck(out, name, listed.get(name), header, scan).run()
        if advance is not None:
            advance(1)
    return scan


def _add(scan: ShardScan, kind: str, message: str, *paths: str, check: str = INTEGRITY) -> None:
    scan.findings.append(Finding(check, kind, message, paths))


@dataclass
class _ShardCheck:
    out: Path
    name: str
    expected: dict[str, Record] | None  # key -> the manifest's record; None: not listed
    header: Mapping[str, Any]
    scan: ShardScan
    seen: set[str] = field(default_factory=set)

    @property
    def shown(self) -> str:
        return f"{SHARDS_DIR}/{self.name}"

    def run(self) -> None:
        path = self.out / SHARDS_DIR / self.name
        if self.expected is None:
            _add(self.scan, "unlisted-shard", f"{self.shown}: a shard the manifest does not list "
                 "(a loader of the shards folder trains on it)", self.shown)  # fmt: skip
        elif not path.is_file():
            n = len(self.expected)
            _add(
                self.scan,
                "missing-shard",
                f"{self.shown}: missing ({n} samples listed)",
                self.shown,
            )
            return
        else:
            self._commit(path)
        if path.is_file() and path.suffix in (".tar", ".parquet"):
            self._samples(path)

    def _commit(self, path: Path) -> None:
        assert self.expected is not None
        found = shard_commit(self.out, self.name)
        where = records_name(self.name)
        if found.commit is None:
            why = found.problem or "no commit line at its end"
            _add(self.scan, "uncommitted", f"{self.shown}: its records {where} are {why}: the "
                 "shard was not finished", self.shown)  # fmt: skip
        else:
            try:
                size, sha256 = size_and_sha256_file(path)
            except OSError as exc:
                _add(self.scan, "unreadable", f"{self.shown}: cannot read: {exc}", self.shown)
                return
            commit = found.commit
            if (size, sha256) != (commit.get("size"), commit.get("sha256")):
                _add(self.scan, "shard-changed", f"{self.shown}: its size or sha256 differs from "
                     f"its commit line's (committed {commit.get('size')} bytes, now {size})",
                     self.shown)  # fmt: skip
            if commit.get("samples") != len(found.records) or commit.get("shard") != self.name:
                _add(self.scan, "records-differ", f"{where}: its commit line names "
                     f"{commit.get('samples')} samples of {commit.get('shard')}, the file holds "
                     f"{len(found.records)}", self.shown)  # fmt: skip
        if found.problem != "missing":
            theirs = {str(r.get("key")): r for r in found.records}
            differ = sorted(k for k in theirs.keys() | self.expected.keys()
                            if theirs.get(k) != self.expected.get(k))  # fmt: skip
            if differ:
                _add(self.scan, "records-differ", f"{where}: {len(differ)} records differ from "
                     f"the manifest's (first: key {differ[0]})", self.shown)  # fmt: skip

    def _samples(self, path: Path) -> None:
        try:
            for index, sample in enumerate(shard_samples(path)):
                self._sample(path, index, sample)
        except DamagedShard as exc:
            _add(self.scan, "damaged-shard", f"{self.shown}: {exc}", self.shown)
            return
        for key, record in sorted((self.expected or {}).items()):
            if key not in self.seen:
                _add(self.scan, "missing", f"{record['path']}: listed in the manifest but not "
                     f"in {self.shown} (key {key})", record["path"])  # fmt: skip

    def _sample(self, path: Path, index: int, sample: Sample) -> None:
        record = (self.expected or {}).get(sample.key)
        own = sample.record or {}
        shown = record["path"] if record else f"{self.shown}:{sample.key}"
        for problem in sample.problems or []:
            _add(self.scan, "bad-sample", f"{self.shown}: {problem}", shown)
        if sample.key in self.seen:
            _add(self.scan, "duplicate-key", f"{shown}: key {sample.key} twice in {self.shown}",
                 shown)  # fmt: skip
        self.seen.add(sample.key)
        if sample.image is None or sample.where is None:
            _add(self.scan, "no-image", f"{shown}: a sample with no image", shown)
            return
        match = _SHARD_NAME.fullmatch(self.name)
        split = match["split"] if match else (record or own).get("split", "")
        if record is None:
            if self.expected is not None:
                _add(self.scan, "unlisted", f"{shown}: a sample the manifest does not list "
                     f"({own.get('path', 'no record')}); a consumer of the shard trains on it",
                     shown)  # fmt: skip
        else:
            self._listed(sample, record, split)
        reader = functools.partial(read_again, sample.where)
        label = str((record or own).get("label", ""))
        image = ImageFile(shown, str(split), label, path / f"{index:08d}", reader)
        self.scan.files.append(image)

    def _listed(self, sample: Sample, record: Record, split: str) -> None:
        assert sample.image is not None
        shown, own = record["path"], sample.record or {}
        if hashlib.sha256(sample.image).hexdigest() != record["sha256"]:
            _add(self.scan, "sha256-mismatch", f"{shown}: sha256 differs from the manifest's",
                 shown)  # fmt: skip
        if split != record["split"]:
            _add(self.scan, "wrong-shard", f"{shown}: recorded as {record['split']} but in "
                 f"{self.shown}", shown)  # fmt: skip
        # A tar's record is the whole manifest record; a Parquet row holds some of its fields.
        whole = isinstance(sample.where, TarMember)
        fields = set(record) | set(own) if whole else set(own)
        differ = sorted(k for k in fields if own.get(k) != record.get(k) and k != "annotation")
        if differ or (whole and not own):
            what = ", ".join(differ) or "the record is missing"
            _add(self.scan, "record-differs", f"{shown}: the sample's record differs from the "
                 f"manifest's ({what})", shown)  # fmt: skip
        if is_annotated(self.header):
            self.scan.findings += _annotation_findings(sample, record, self.header)


def _annotation_findings(
    sample: Sample, record: Record, header: Mapping[str, Any]
) -> list[Finding]:
    """The sample's own annotation (what a consumer reads) against its image and the manifest."""
    shown = record["path"]
    findings: list[Finding] = []

    def add(kind: str, message: str) -> None:
        findings.append(Finding(ANNOTATIONS, kind, f"{shown}: {message}", (shown,)))

    annotation = (sample.record or {}).get("annotation")
    if not isinstance(annotation, dict) or not isinstance(annotation.get("objects"), list):
        add("no-annotation", "the sample has no annotation")
        return findings
    size = _image_size(sample.image or b"")
    if size is None:
        add("size", "the image cannot be read")
        return findings
    width, height = size
    if list(annotation.get("size", [])) != [width, height]:
        add("size", f"the image is {width}x{height}, the sample's annotation says "
            f"{annotation.get('size')}")  # fmt: skip
    names = set(header["annotations"].get("names", []))
    for problem in object_problems(annotation["objects"], width, height, names):
        add("bad-object", problem)
    expected = (record.get("annotation") or {}).get("objects", [])
    for problem in compare_objects(expected, annotation["objects"], MANIFEST):
        add("annotation-differs", problem)
    if header["annotations"].get("format") == "masks":  # a segmentation sample's class ids
        # (the record's annotation sha256 is of its objects here: the mask is checked whole)
        mask_size = None if sample.mask is None else _image_size(sample.mask)
        if mask_size is None:
            add("missing-mask", "the sample has no readable mask")
        elif mask_size != size:
            add("size", f"its mask is {mask_size[0]}x{mask_size[1]}, the image {width}x{height}")
    return findings


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
