"""WebDataset shards: a tar file of samples, each a `<key>.<ext>` image and a `<key>.json`
record (label, split, soft label, lineage: the output's manifest record and its shard).

Written as the `webdataset` library reads them: members grouped by key, in order. Every
member has the same owner, mode and time, so equal samples give byte-identical shards.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import BinaryIO

from augment.stages.manifest import Record, dumps

EXTENSION = ".tar"


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # a shard's bytes depend on its samples only
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def write_shard(sink: BinaryIO, samples: Iterable[tuple[str, Record, bytes]]) -> None:
    """(key, record, image bytes) per sample; the key has no dot (WebDataset splits there)."""
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for key, record, image in samples:
            ext = PurePosixPath(record["path"]).suffix.lower()
            tar.addfile(*_member(f"{key}{ext}", image))
            tar.addfile(*_member(f"{key}.json", dumps(record).encode("utf-8")))
