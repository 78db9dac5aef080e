"""OUT's outputs packed into shards: `--output-format webdataset|parquet`.

After a run (a rerun proven unchanged included), every output listed in OUT/manifest.jsonl
is packed, split by split and in the manifest's path order, into shards of `shard_size`
samples: `OUT/shards/<split>-<nnnnn>.tar|parquet`. `OUT/shards/manifest.jsonl` lists every
sample with its shard (the manifest record plus `shard`), and `OUT/shards/shards.json` the
shards with their digests. The folders stay: the run and its reruns work from them, and the
shards are rebuilt from them.

Same outputs, format and shard size => byte-identical shards. A shard whose bytes would not
change is not rewritten (its mtime kept); when the outputs have not changed at all, not one
image is read (the digest of the shard manifest says so).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from augment.errors import ManifestError
from augment.files import ChangedFile, write_text_atomic
from augment.imaging.digests import sha256_bytes
from augment.layout import MANIFEST_NAME
from augment.stages.manifest import Record, dumps, iter_jsonl
from augment.writers import parquet, webdataset

SHARDS_DIR = "shards"
SHARD_MANIFEST_NAME = f"{SHARDS_DIR}/manifest.jsonl"
SHARDS_INDEX_NAME = f"{SHARDS_DIR}/shards.json"
DEFAULT_SHARD_SIZE = 1000
SPLIT_ORDER = ("train", "validation", "test")

ShardWriter = Callable[[BinaryIO, Iterable[tuple[str, Record, bytes]]], None]
# The registry of formats: --output-format's choices beside `folders`.
WRITERS: dict[str, tuple[str, ShardWriter]] = {
    "webdataset": (webdataset.EXTENSION, webdataset.write_shard),
    "parquet": (parquet.EXTENSION, parquet.write_shard),
}
OUTPUT_FORMATS = ("folders", *WRITERS)


def plan_shards(records: Iterable[Record], extension: str, shard_size: int) -> list[Record]:
    """Each record with its `shard` and `key`: splits in order, paths in order."""
    by_split: dict[str, list[Record]] = {}
    for record in records:
        by_split.setdefault(str(record["split"]), []).append(record)
    order = sorted(by_split, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9, s))
    planned: list[Record] = []
    for split in order:
        for n, record in enumerate(sorted(by_split[split], key=lambda r: r["path"])):
            shard = f"{split}-{n // shard_size:05d}{extension}"
            planned.append({**record, "shard": shard, "key": f"{n:08d}"})
    return planned


def write_shards(out: Path, output_format: str, shard_size: int = DEFAULT_SHARD_SIZE) -> int:
    """Pack OUT's outputs into shards; returns how many shard files were (re)written."""
    extension, writer = WRITERS[output_format]
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: no manifest to pack into shards")
    planned = plan_shards(iter_jsonl(manifest), extension, shard_size)
    listing = "".join(dumps(record) + "\n" for record in planned)
    digest = sha256_bytes(f"{output_format}\n{shard_size}\n{listing}".encode())
    folder = out / SHARDS_DIR
    names = sorted({str(r["shard"]) for r in planned})
    if _up_to_date(out, digest, names):
        return 0
    folder.mkdir(exist_ok=True)
    index = []
    rewritten = 0
    for name, members in _by_shard(planned):
        buffer = io.BytesIO()
        writer(buffer, ((str(r["key"]), r, _image(out, r)) for r in members))
        data = buffer.getvalue()
        changed = ChangedFile(folder / name)
        changed.write(data)
        rewritten += changed.commit()
        index.append({"name": name, "samples": len(members), "sha256": sha256_bytes(data)})
    for stale in folder.glob(f"*{extension}"):
        if stale.name not in names:
            stale.unlink()
    changed = ChangedFile(out / SHARD_MANIFEST_NAME)
    changed.write(listing.encode("utf-8"))
    changed.commit()
    header = {"format": output_format, "shard_size": shard_size, "digest": digest}
    write_text_atomic(out / SHARDS_INDEX_NAME, json.dumps({**header, "shards": index}, indent=1))
    return rewritten


def _up_to_date(out: Path, digest: str, names: list[str]) -> bool:
    try:
        index = json.loads((out / SHARDS_INDEX_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(index, dict) or index.get("digest") != digest:
        return False
    return all((out / SHARDS_DIR / name).is_file() for name in names)


def _by_shard(planned: list[Record]) -> Iterator[tuple[str, list[Record]]]:
    members: list[Record] = []
    for record in planned:
        if members and members[-1]["shard"] != record["shard"]:
            yield str(members[0]["shard"]), members
            members = []
        members.append(record)
    if members:
        yield str(members[0]["shard"]), members


def _image(out: Path, record: Record) -> bytes:
    path = out / str(record["path"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: listed in the manifest but cannot be read: {exc}") from None
    if sha256_bytes(data) != record["sha256"]:
        raise ManifestError(f"{path}: its bytes are not the manifest's (sha256 differs)")
    return data
