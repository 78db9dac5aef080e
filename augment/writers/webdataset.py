"""WebDataset shards: a tar file of samples, each a `<key>.<ext>` image, a `<key>.json`
record (label, split, soft label, lineage, annotation: the output's manifest record with its
shard and key) and, for a segmentation set, a `<key>.mask.png` class-id mask.

Written as the `webdataset` library reads them: members grouped by key, in order. Every
member has the same owner, mode and time, so equal samples give byte-identical shards. The
tar is written member by member straight into its file: one sample at a time in memory.
"""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath
from typing import BinaryIO

from augment.stages.manifest import Record, dumps

EXTENSION = ".tar"
_BLOCK = tarfile.BLOCKSIZE


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # a shard's bytes depend on its samples only
    info.uname = info.gname = ""
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (-len(data) % _BLOCK)


class TarShard:
    """Samples appended to an open file; `close` ends the archive as tar does."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink

    def add(self, key: str, record: Record, image: bytes, mask: bytes | None) -> None:
        """The key has no dot (WebDataset splits a member's name there)."""
        ext = PurePosixPath(record["path"]).suffix.lower()
        self._sink.write(_member(f"{key}{ext}", image))
        self._sink.write(_member(f"{key}.json", dumps(record).encode("utf-8")))
        if mask is not None:
            self._sink.write(_member(f"{key}.mask.png", mask))

    def abort(self) -> None:
        """Nothing to do before the file is discarded."""

    def close(self) -> None:
        end = self._sink.tell() + 2 * _BLOCK
        self._sink.write(b"\0" * (2 * _BLOCK + (-end % tarfile.RECORDSIZE)))
