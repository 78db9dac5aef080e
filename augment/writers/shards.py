"""Sharded outputs (`--output-format webdataset|parquet`): the workers write each output
straight into its shard, never as a loose file.

- **Stable shards.** A sample's shard is `<split>-<nnnnn>` with `nnnnn` = sha256 of its
  source's path (relative, POSIX) modulo the split's shard count. The counts are fixed on
  the first run (outputs / `--shard-size`, at least 1) and kept in `augment.json`, so a
  rerun after one source changed rebuilds only the shards holding that source's outputs.
- **Commit markers.** A shard `OUT/shards/<name>.tar|parquet` is written to a temporary and
  renamed into place; then its records, `OUT/records/<name>.jsonl` (one manifest
  record per sample, with `shard` and `key`, and a last line `{"commit": ...}` with the
  digest of the shard's inputs, its size and sha256), the same way, last: a shard without
  its records is unfinished, and is rebuilt. A committed shard whose inputs digest is
  unchanged is kept as it is.

`ShardFile` is the whole interface a worker uses: open a shard, add samples, commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from augment.errors import OutputError
from augment.files import open_temp, output_error, temp_path_for
from augment.imaging.digests import size_and_sha256_file
from augment.model import Rejected
from augment.stages.manifest import Record, dumps

SHARDS_DIR = "shards"
# Beside the shards, not among them: a loader given OUT/shards/ (Hugging Face's infers the
# format from the files it finds) sees the shards only.
RECORDS_DIR = "records"
DEFAULT_SHARD_SIZE = 1000
COMMIT_FORMAT = 1


class SampleWriter(Protocol):
    def add(self, key: str, record: Record, image: bytes, mask: bytes | None) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


# The registry of formats: --output-format's choices beside `folders`, with the extension of
# their files (each writer's EXTENSION, tests/writers/test_shards.py). The writers' modules
# are imported only by a run that writes shards (`_writer`): a folders run does without.
WRITERS = {"webdataset": ".tar", "parquet": ".parquet"}
OUTPUT_FORMATS = ("folders", *WRITERS)


def _writer(output_format: str, sink: BinaryIO) -> SampleWriter:
    if output_format == "parquet":
        from augment.writers.parquet import ParquetShard

        return ParquetShard(sink)
    from augment.writers.webdataset import TarShard

    return TarShard(sink)


_SHARD_NAME = re.compile(r"[a-z]+-[0-9]{5}(\.tar|\.parquet|\.jsonl)")


def shard_number(source_path: str, count: int) -> int:
    """Which of `count` shards a source's outputs go to: by its path alone."""
    digest = hashlib.sha256(source_path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class ShardLayout:
    """How a run's outputs are sharded: the format and each split's fixed shard count."""

    output_format: str
    counts: Mapping[str, int]
    shard_size: int = DEFAULT_SHARD_SIZE
    # A store run: the store URL of OUT the workers write the shards to, and of SRC they
    # read the sources from (None: the local folders). Not in `augment.json`.
    store: str | None = None
    source: str | None = None

    @property
    def extension(self) -> str:
        return WRITERS[self.output_format]

    def shard_of(self, split: str, source_path: str) -> str:
        number = shard_number(source_path, self.counts[split])
        return f"{split}-{number:05d}{self.extension}"

    def to_dict(self) -> dict[str, Any]:
        """`augment.json`'s `shards`: what the next run keeps its shard counts from."""
        counts = dict(sorted(self.counts.items()))
        return {"format": self.output_format, "shard_size": self.shard_size, "counts": counts}


def shard_counts(
    outputs: Mapping[str, int], shard_size: int, recorded: Mapping[str, Any] | None
) -> dict[str, int]:
    """Each split's shard count: the recorded one when the shard size is the same (a count
    that moved would move nearly every sample), else outputs / shard size, at least 1."""
    kept: Mapping[str, Any] = {}
    if isinstance(recorded, Mapping) and recorded.get("shard_size") == shard_size:
        counts = recorded.get("counts")
        kept = counts if isinstance(counts, Mapping) else {}
    chosen: dict[str, int] = {}
    for split, n in outputs.items():
        count = kept.get(split)
        if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
            chosen[split] = count
        else:
            chosen[split] = max(1, math.ceil(n / shard_size))
    return chosen


def check_same_layout(header: Mapping[str, Any], layout: str) -> None:
    """Folders and shards are not mixed in one OUT: switching is refused, not half done."""
    before = header.get("options", {}).get("output_format", "folders") if header else layout
    if before != layout:
        raise OutputError(
            f"this output was written with --output-format {before}; writing it as {layout} "
            "would leave both: choose another output folder, or empty this one"
        )


def records_name(shard: str) -> str:
    """Where a shard's records are, relative to OUT: `records/<split>-<nnnnn>.jsonl`."""
    return f"{RECORDS_DIR}/{shard.split('.', 1)[0]}.jsonl"


class ShardFile:
    """One shard being written: `add` each sample, then `commit` (or `discard`). With a
    `place` (a store OUT's, augment/writers/store_shards.py), the shard and its records go
    there instead of into the folder `out`: the same calls, another placement."""

    def __init__(
        self,
        out: Path,
        name: str,
        output_format: str,
        inputs: str,
        place: Placement | None = None,
    ) -> None:
        self._rel, self._records_rel = f"{SHARDS_DIR}/{name}", records_name(name)
        self._place: Placement = place or FolderPlacement(out)
        self._name, self._inputs, self._samples = name, inputs, 0
        self._handle: BinaryIO | None = None
        self._records: BinaryIO | None = None
        try:
            self._handle = self._place.open(self._rel)
            self._records = self._place.open(self._records_rel)
        except OSError as exc:
            self.discard()
            raise output_error(out / self._rel, exc) from exc
        self._writer = _writer(output_format, self._handle)

    def add(self, record: Record, image: bytes, mask: bytes | None = None) -> Record:
        """The sample's record as its shard lists it (with `shard` and `key`)."""
        assert self._records is not None
        key = f"{self._samples:08d}"
        listed = {**record, "shard": self._name, "key": key}
        try:
            self._writer.add(key, listed, image, mask)
            self._records.write((dumps(listed) + "\n").encode("utf-8"))
        except OSError as exc:
            self.discard()
            raise self._place.error(self._rel, exc) from exc
        self._samples += 1
        return listed

    def commit(self, rejected: Sequence[Rejected] = ()) -> None:
        """The shard in place, then its records, last: the shard is done. `rejected`: the
        sources (and partners) the shard left out, which a rerun that keeps it reports."""
        assert self._handle is not None and self._records is not None
        try:
            self._writer.close()
            self._handle.close()
            size, sha256 = size_and_sha256_file(self._place.local(self._rel))
            self._place.finish(self._rel)
            commit = {"shard": self._name, "inputs": self._inputs, "samples": self._samples}
            commit |= {"size": size, "sha256": sha256, "format": COMMIT_FORMAT}
            commit["rejected"] = [[r.path, r.reason, r.retry] for r in rejected]
            self._records.write((dumps({"commit": commit}) + "\n").encode("utf-8"))
            self._records.close()
            self._place.finish(self._records_rel)
        except OSError as exc:
            self.discard()
            raise self._place.error(self._rel, exc) from exc
        finally:
            self._handle = self._records = None

    def discard(self) -> None:
        if self._handle is not None and hasattr(self, "_writer"):
            self._writer.abort()
        for handle, rel in ((self._handle, self._rel), (self._records, self._records_rel)):
            if handle is not None:
                handle.close()
            with contextlib.suppress(OSError):
                self._place.drop(rel)
        self._handle = self._records = None


class Placement(Protocol):
    """Where a shard's files go: written to a local temporary, then put in place."""

    def open(self, rel: str) -> BinaryIO: ...
    def local(self, rel: str) -> Path: ...
    def finish(self, rel: str) -> None: ...
    def drop(self, rel: str) -> None: ...
    def error(self, rel: str, exc: OSError) -> Exception: ...


class FolderPlacement:
    """OUT a folder: a temporary beside the file, renamed over it."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def open(self, rel: str) -> BinaryIO:
        return open_temp(self.out / rel)

    def local(self, rel: str) -> Path:
        return temp_path_for(self.out / rel)

    def finish(self, rel: str) -> None:
        os.replace(temp_path_for(self.out / rel), self.out / rel)

    def drop(self, rel: str) -> None:
        temp_path_for(self.out / rel).unlink()

    def error(self, rel: str, exc: OSError) -> Exception:
        return output_error(self.out / rel, exc)


def committed(out: Path, name: str, inputs: str) -> list[Rejected] | None:
    """The rejections of shard `name` if it was committed from these inputs and is still
    there, whole (by its size: reading every kept shard again would cost a rerun what
    writing it did), and none of them may pass (else the rerun tries again); else None."""
    try:
        size = (out / SHARDS_DIR / name).stat().st_size
    except OSError:
        return None
    return kept_rejections(_commit_line(out / records_name(name)), name, inputs, size)


def kept_rejections(
    commit: dict[str, Any] | None, name: str, inputs: str, size: int
) -> list[Rejected] | None:
    """`committed`'s decision from a shard's commit line and its size as found."""
    if commit is None or commit.get("inputs") != inputs or commit.get("shard") != name:
        return None
    if size != commit.get("size"):
        return None
    try:
        rejected = [Rejected(str(p), str(r), bool(t)) for p, r, t in commit["rejected"]]
    except (KeyError, TypeError, ValueError):
        return None
    return None if any(r.retry for r in rejected) else rejected


def last_line_commit(text: bytes) -> dict[str, Any] | None:
    """The commit of a records file's tail, if its last line is one."""
    try:
        commit = json.loads(text.rstrip(b"\n").rpartition(b"\n")[2]).get("commit")
    except (ValueError, AttributeError):
        return None
    return commit if isinstance(commit, dict) else None


def _commit_line(path: Path) -> dict[str, Any] | None:
    """The records file's last line (read from the end: the records before it can be many;
    the line itself grows with the shard's rejections)."""
    try:
        with path.open("rb") as f:
            size, tail = path.stat().st_size, 4096
            while True:
                f.seek(max(0, size - tail))
                text = f.read().rstrip(b"\n")
                if b"\n" in text or tail >= size:
                    break
                tail *= 4
    except OSError:
        return None
    return last_line_commit(text)


def shard_records(out: Path, name: str) -> Iterator[Record]:
    """A committed shard's records, in shard order."""
    with (out / records_name(name)).open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if "commit" not in record:
                yield record


def remove_other_shards(out: Path, names: Iterable[str]) -> int:
    """Shards (and their records) this run does not make, named as augment names them: a
    user's own file in OUT/shards/ or OUT/records/ is never touched. Returns how many."""
    keep = {f"{SHARDS_DIR}/{n}" for n in names} | {records_name(n) for n in names}
    removed = 0
    for folder in (SHARDS_DIR, RECORDS_DIR):
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.listdir(out / folder)):
                path = out / folder / entry
                listed = f"{folder}/{entry}" in keep
                if not listed and _SHARD_NAME.fullmatch(entry) and path.is_file():
                    path.unlink()
                    removed += 1
    return removed
