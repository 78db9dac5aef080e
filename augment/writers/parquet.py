"""Parquet shards: one row per output, the image bytes and the manifest's columns, with the
Hugging Face `datasets` schema in the file's metadata (so `load_dataset("parquet", ...)`
gives an Image column). An annotated set's rows carry their `annotation` (JSON text) and a
segmentation set's its class-id `mask` (PNG bytes). Needs pyarrow (`pip install
"augment[parquet]"`).

Rows are written in row groups as they come, so a shard of any size is never held whole.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, BinaryIO

from augment.errors import OutputError
from augment.stages.manifest import Record

EXTENSION = ".parquet"

_TEXT = ("path", "split", "label", "sha256", "recipe", "shard", "key")
_NUMBERS = {"variant": "int64", "seed": "uint64"}  # a seed is any 64-bit unsigned value
_JSON = ("sources", "params", "soft_label", "annotation")  # nested values, as JSON text
# A row group is written once this many image bytes (or rows) are waiting.
_GROUP_BYTES = 32 << 20
_GROUP_ROWS = 1000


def _features() -> dict[str, Any]:
    value = {"_type": "Value"}
    return {
        "image": {"_type": "Image"},
        **{name: {**value, "dtype": "string"} for name in _TEXT},
        **{name: {**value, "dtype": dtype} for name, dtype in _NUMBERS.items()},
        **{name: {**value, "dtype": "string"} for name in _JSON},
        "mask": {**value, "dtype": "binary"},
    }


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError(
            "--output-format parquet needs pyarrow: pip install 'augment[parquet]'"
        ) from None
    return pa, pq


class ParquetShard:
    """Samples buffered into row groups of one Parquet file."""

    def __init__(self, sink: BinaryIO) -> None:
        self._pa, pq = _pyarrow()
        self._sink = sink
        self._rows: list[tuple[Record, bytes, bytes | None]] = []
        self._bytes = 0
        metadata = {b"huggingface": json.dumps({"info": {"features": _features()}}).encode()}
        self._schema = self._table([]).schema.with_metadata(metadata)
        # Images are compressed already: compressing them again costs time and saves nothing.
        self._writer = pq.ParquetWriter(
            sink, self._schema, compression="NONE", use_dictionary=False
        )

    def add(self, key: str, record: Record, image: bytes, mask: bytes | None) -> None:
        self._rows.append((record, image, mask))
        self._bytes += len(image)
        if self._bytes >= _GROUP_BYTES or len(self._rows) >= _GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._table(self._rows).cast(self._schema))
        self._rows, self._bytes = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        """Before the file is discarded: closed now, never later by the garbage collector
        (which would print its error, 'write to closed file', on the user's terminal)."""
        self._rows = []
        with contextlib.suppress(Exception):  # whatever stopped the shard also stops this
            self._writer.close()

    def _table(self, rows: list[tuple[Record, bytes, bytes | None]]) -> Any:
        pa = self._pa
        image = pa.StructArray.from_arrays(
            [
                pa.array([data for _, data, _ in rows], pa.binary()),
                pa.array([record["path"] for record, _, _ in rows], pa.string()),
            ],
            names=["bytes", "path"],
        )
        columns: dict[str, Any] = {"image": image}
        for name in _TEXT:
            columns[name] = pa.array([str(r[name]) for r, _, _ in rows], pa.string())
        for name, dtype in _NUMBERS.items():
            columns[name] = pa.array([int(r[name]) for r, _, _ in rows], getattr(pa, dtype)())
        for name in _JSON:
            columns[name] = pa.array(
                [None if r.get(name) is None else json.dumps(r[name]) for r, _, _ in rows],
                pa.string(),
            )
        columns["mask"] = pa.array([mask for _, _, mask in rows], pa.binary())
        return pa.table(columns)
