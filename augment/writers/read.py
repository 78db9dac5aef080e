"""Shards read back, a sample at a time, for `augment audit` (augment/commands/audit_shards.py):
what a consumer of `OUT/shards/` would read, and each shard's records file with its commit line.

- `shard_samples(path)`: a WebDataset tar's samples (members grouped by key, as the `webdataset`
  library groups them) or a Parquet shard's rows, one at a time: a shard of any size is never
  held whole (a Parquet shard is read in batches of a few rows). A shard that cannot be read
  to its end (a truncated tar, a corrupt Parquet file) raises `DamagedShard` after the samples
  read before the damage.
- `read_again(where)`: one sample's image bytes again, from where `shard_samples` found them
  (a tar member's offset; a Parquet row, its row group read once and kept while its rows are
  asked for), for the checks that decode images later.
- `shard_commit(out, name)`: a shard's records (the manifest records it holds) and its commit
  line, or why they cannot be read.
"""

from __future__ import annotations

import bisect
import itertools
import json
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augment.errors import DatasetError
from augment.stages.manifest import Record
from augment.writers import parquet
from augment.writers.shards import records_name

MASK = "mask.png"
RECORD = "json"
_BATCH_ROWS = 16  # Parquet rows held at once while scanning
# The Parquet columns that hold nested values as JSON text (augment/writers/parquet.py).
JSON_COLUMNS = ("sources", "params", "soft_label", "annotation")


class DamagedShard(Exception):
    """The shard cannot be read (further): its message says where and why."""


@dataclass(frozen=True)
class TarMember:
    shard: Path
    offset: int
    size: int


@dataclass(frozen=True)
class ParquetRow:
    images: ParquetImages
    row: int


@dataclass
class Sample:
    """One sample as a consumer reads it: its key, image, record (the tar's `<key>.json`, or
    the Parquet row's columns) and mask; `where` finds the image again."""

    key: str
    image: bytes | None = None
    image_name: str = ""
    record: Record | None = None
    mask: bytes | None = None
    where: TarMember | ParquetRow | None = None
    problems: list[str] | None = None  # a record that does not parse, a member twice


def shard_samples(path: Path) -> Iterator[Sample]:
    if path.suffix == parquet.EXTENSION:
        return _parquet_samples(path)
    return _tar_samples(path)


def read_again(where: TarMember | ParquetRow) -> bytes:
    if isinstance(where, ParquetRow):
        return where.images.image(where.row)
    with where.shard.open("rb") as f:
        f.seek(where.offset)
        data = f.read(where.size)
    if len(data) != where.size:
        raise OSError(f"{where.shard.name}: the image ends early (the shard changed)")
    return data


# --------------------------------------------------------------------------- WebDataset


def _tar_samples(path: Path) -> Iterator[Sample]:
    size = path.stat().st_size
    sample: Sample | None = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                # tarfile keeps every member it has seen (a source with a huge --times makes a
                # shard of 10^5 members): forgotten, since each is read where it is found.
                tar.members.clear()  # type: ignore[attr-defined]
                if info.offset_data + info.size > size:
                    raise DamagedShard(f"{info.name} ends past the end of the file (truncated)")
                key, _, ext = info.name.rpartition("/")[2].partition(".")
                if sample is None or key != sample.key:
                    if sample is not None:
                        yield sample
                    sample = Sample(key)
                _take(sample, ext, info, tar, path)
            end = tar.offset  # where tarfile stopped: a whole tar has its end marker there
        with path.open("rb") as f:
            f.seek(end)
            if f.read(tarfile.BLOCKSIZE) != b"\0" * tarfile.BLOCKSIZE:
                raise DamagedShard(f"no end-of-archive marker at byte {end} (truncated)")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DamagedShard(f"not a readable tar: {exc}") from exc
    if sample is not None:
        yield sample


def _take(
    sample: Sample, ext: str, info: tarfile.TarInfo, tar: tarfile.TarFile, path: Path
) -> None:
    handle = tar.extractfile(info)
    data = handle.read() if handle is not None else b""
    if len(data) != info.size:
        raise DamagedShard(f"{info.name} ends early (truncated)")
    problems = sample.problems = sample.problems or []
    if ext == RECORD:
        if sample.record is not None:
            problems.append(f"{info.name}: a second record")
        try:
            record = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            problems.append(f"{info.name}: not a JSON record")
            return
        sample.record = record if isinstance(record, dict) else None
    elif ext == MASK:
        sample.mask = data
    elif sample.image is None:
        sample.image, sample.image_name = data, info.name
        sample.where = TarMember(path, info.offset_data, info.size)
    else:
        problems.append(f"{info.name}: a second image beside {sample.image_name}")


# --------------------------------------------------------------------------- Parquet


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            "auditing Parquet shards needs pyarrow: pip install 'augment[parquet]'"
        ) from None
    return pq


# Column chunks read in pieces, not whole and ahead: a scan's memory stays about one row group
# whatever the shard's size (measured in docs/audit.md).
_STREAMED = {"buffer_size": 1 << 20, "pre_buffer": False}
_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, TypeError)


def _parquet_samples(path: Path) -> Iterator[Sample]:
    pq = _pyarrow()
    row = 0
    try:
        shard = pq.ParquetFile(path, **_STREAMED)
        groups = [shard.metadata.row_group(g).num_rows for g in range(shard.num_row_groups)]
        images = ParquetImages(path, groups)
        names = set(shard.schema_arrow.names)
        if "image" not in names:
            raise DamagedShard("no image column")
        for batch in shard.iter_batches(batch_size=_BATCH_ROWS, use_threads=False):
            for values in batch.to_pylist():
                yield _row_sample(values, row, images)
                row += 1
    except _ERRORS as exc:  # pyarrow's errors (ArrowInvalid, ArrowIOError) are among them
        raise DamagedShard(f"not a readable Parquet file (row {row}): {exc}") from exc


def _row_sample(values: dict[str, Any], row: int, images: ParquetImages) -> Sample:
    image = values.pop("image", None) or {}
    sample = Sample(str(values.get("key", "")), problems=[])
    sample.image, sample.image_name = image.get("bytes"), str(image.get("path"))
    sample.mask = values.pop("mask", None)
    sample.where = ParquetRow(images, row)
    record: Record = {}
    for name, value in values.items():
        if name in JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                sample.problems = [*(sample.problems or []), f"row {row}: {name} is not JSON"]
        if value is not None:
            record[name] = value
    sample.record = record
    return sample


class ParquetImages:
    """A Parquet shard's images by row, for reading them again. The row group of a row asked
    for is read (its image column only) into a cache shared by every shard, of the last
    `_GROUPS_KEPT` groups (each at most the writer's 32 MB): rows asked for in order, as the
    duplicate checks ask, read each group once, and the memory is bounded by the cache."""

    def __init__(self, path: Path, rows_per_group: list[int]) -> None:
        self._path = path
        self._starts = list(itertools.accumulate(rows_per_group, initial=0))
        stat = path.stat()  # the file as scanned: a cached group of a file since changed is not it
        self._version = (stat.st_size, stat.st_mtime_ns)

    def image(self, row: int) -> bytes:
        group = bisect.bisect_right(self._starts, row) - 1
        if not 0 <= group < len(self._starts) - 1:
            raise OSError(f"{self._path.name}: no row {row}")
        images = _row_group(self._path, self._version, group)
        data = images[row - self._starts[group]].as_py()
        if not isinstance(data, bytes):
            raise OSError(f"{self._path.name} row {row}: no image bytes")
        return data


_GROUPS_KEPT = 2  # rows asked for in order straddle at most two groups at a time
_groups: OrderedDict[tuple[Path, tuple[int, int], int], Any] = OrderedDict()
_groups_lock = threading.Lock()


def _row_group(path: Path, version: tuple[int, int], group: int) -> Any:
    """The image bytes column of one row group (cached, see ParquetImages)."""
    key = (path, version, group)
    with _groups_lock:
        if key in _groups:
            _groups.move_to_end(key)
            return _groups[key]
        try:
            shard = _pyarrow().ParquetFile(path, **_STREAMED)
            table = shard.read_row_group(group, columns=["image"], use_threads=False)
            images = table.column("image").combine_chunks().field("bytes")
        except _ERRORS as exc:
            raise OSError(f"{path.name} row group {group}: {exc}") from exc
        _groups[key] = images
        while len(_groups) > _GROUPS_KEPT:
            _groups.popitem(last=False)
        return images


# --------------------------------------------------------------------------- records


@dataclass
class ShardRecords:
    records: list[Record]
    commit: dict[str, Any] | None  # the last line's `commit`, None when it is not there
    problem: str | None = None  # why the records file cannot be read


def shard_commit(out: Path, name: str) -> ShardRecords:
    """The shard's records file: its records and its commit line (the last one)."""
    found = ShardRecords([], None)
    try:
        with (out / records_name(name)).open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError(f"line {n} is not a JSON object")
                if isinstance(entry.get("commit"), dict):
                    found.commit = entry["commit"]
                    continue
                if found.commit is not None:  # a commit line is the last: this one is not
                    found.problem, found.commit = f"line {n}: a record after the commit line", None
                found.records.append(entry)
    except FileNotFoundError:
        found.problem = "missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        found.problem = f"unreadable: {exc}"
    return found
