"""An object store as a run uses it, through fsspec: list (path, size, ETag), read bytes,
create-only writes, overwrites, deletes. Nothing here relies on what only a POSIX
filesystem has (inodes, flock, rename): a store is a flat map from keys to bytes.

`s3://` goes through s3fs (the `s3` extra); `gs://` through gcsfs, `memory://` and
`file://` through fsspec itself. An S3 endpoint other than AWS's comes from the standard
`AWS_ENDPOINT_URL` variable (botocore reads it), credentials from the usual AWS ones.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Any

from augment.errors import OutputError
from augment.stores.url import protocol_of


@dataclass(frozen=True)
class Entry:
    """An object as a listing shows it; `etag` changes whenever its bytes do."""

    path: str  # relative to the store's root, "/"-separated
    size: int
    etag: str


class Changed(Exception):
    """A conditional write or delete found the object changed since it was read."""


class Store:
    """The objects under one URL prefix (`s3://bucket/data`, `memory://out`, ...)."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec comes with the test extra
            raise OutputError(
                f"{url}: object storage needs fsspec: pip install 'augment[s3]'"
            ) from exc
        # No listings cache: another run, on another machine, writes the same prefix, and a
        # lease or a shard record must be seen as the store has it now.
        fresh = {"use_listings_cache": False} if protocol_of(url) in ("s3", "gs") else {}
        try:
            fs, root = fsspec.core.url_to_fs(url, **fresh)
        except (ImportError, ValueError) as exc:
            extra = "s3" if protocol_of(url) == "s3" else "the fsspec backend for it"
            raise OutputError(f"cannot open {url}: {exc} (install {extra})") from exc
        self.url = url.rstrip("/")
        self.fs: Any = fs
        self.root = str(root).rstrip("/")
        self.protocol = protocol_of(url)

    def key(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def list(self, prefix: str = "") -> list[Entry]:
        """Every object under `prefix`, in path order."""
        base = self.key(prefix)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        entries = []
        for name, info in found.items():
            name = str(name)
            if info.get("type") == "directory" or not name.startswith(self.root + "/"):
                continue
            entries.append(Entry(name[start:], int(info["size"]), etag_of(info)))
        return sorted(entries, key=lambda e: e.path)

    def info(self, path: str) -> Entry | None:
        try:
            info = self.fs.info(self.key(path))
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return Entry(path, int(info["size"]), etag_of(info))

    def read(self, path: str) -> bytes:
        if self.protocol == "s3":  # one GET: s3fs would HEAD first to read a large object in parts
            return bytes(self.fs.cat_file(self.key(path), max_concurrency=1))
        return bytes(self.fs.cat_file(self.key(path)))

    def create(self, path: str, data: bytes) -> None:
        """Write `path` only if no object has that name: FileExistsError otherwise. On S3
        this is one PUT with `If-None-Match: *`, which the store decides atomically."""
        if self.protocol == "file":
            _create_local(self.key(path), data)
            return
        self.fs.pipe_file(self.key(path), data, mode="create")

    def create_file(self, path: str, local: str) -> None:
        """`create` from a local file, never held in memory: on S3 one PUT with
        `If-None-Match: *`, or for a large file a multipart upload whose completion carries
        it (s3fs's `put_file(mode="create")`)."""
        if self.protocol == "file":
            with open(local, "rb") as f:  # a local store: the bytes as one create
                _create_local(self.key(path), f.read())
            return
        if self.protocol == "s3":
            try:
                self.fs.put_file(local, self.key(path), mode="create")
            except OSError as exc:  # 412: the name exists
                if self.info(path) is not None:
                    raise FileExistsError(path) from exc
                raise
            return
        if self.info(path) is not None:  # other stores: checked, then written
            raise FileExistsError(path)
        self.fs.put_file(local, self.key(path))

    def read_tail(self, entry: Entry, size: int) -> bytes:
        """The object's last `size` bytes (one ranged GET), from its listed size."""
        return self.read_range(entry.path, max(0, entry.size - size), entry.size)

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` of an object: one ranged GET (both ends given, s3fs
        does not HEAD the object first)."""
        return bytes(self.fs.cat_file(self.key(path), start=start, end=end))

    def put(self, path: str, data: bytes, if_match: str | None = None) -> None:
        """Write `path`, replacing any object there; with `if_match`, only if the object's
        ETag is still that one (S3 `If-Match`; elsewhere checked, then written)."""
        if if_match is not None:
            if self.protocol == "s3":
                try:
                    self.fs.pipe_file(self.key(path), data, IfMatch=f'"{if_match}"')
                except OSError as exc:  # s3fs: 412 Precondition Failed
                    raise Changed(path) from exc
                return
            now = self.info(path)
            if now is None or now.etag != if_match:
                raise Changed(path)
        if self.protocol == "file":
            from pathlib import Path

            from augment.files import write_atomic

            write_atomic(Path(self.key(path)), data)
            return
        self.fs.pipe_file(self.key(path), data)

    def delete(self, path: str, if_match: str | None = None) -> None:
        """Remove `path` (gone already: nothing to do); with `if_match`, only that version
        of it (S3's conditional DeleteObject)."""
        if if_match is not None and self.protocol == "s3":
            bucket, key, _ = self.fs.split_path(self.key(path))
            try:
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=f'"{if_match}"')
            except FileNotFoundError:
                return
            except OSError as exc:
                raise Changed(path) from exc
            self.fs.invalidate_cache(self.key(path))
            return
        if if_match is not None:
            now = self.info(path)
            if now is not None and now.etag != if_match:
                raise Changed(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.key(path))


def etag_of(info: dict[str, Any]) -> str:
    """An object's version from its listing: the ETag where the store has one (S3, GCS),
    otherwise size and modification time (local and memory stores)."""
    for field in ("ETag", "etag", "md5Hash"):
        if info.get(field):
            return str(info[field]).strip('"')
    stamp = info.get("mtime") or info.get("LastModified") or info.get("created") or ""
    if hasattr(stamp, "timestamp"):  # a datetime in one call, a number in another
        stamp = stamp.timestamp()
    return f"{info.get('size', '')}-{stamp}"


def _create_local(path: str, data: bytes) -> None:
    """Create-only on a local disk: the bytes go to a temporary file, then a hard link gives
    them the name, which fails if the name exists, so no reader sees half an object."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
