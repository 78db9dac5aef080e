"""Parquet shards: one row per output, the image bytes and the manifest's columns, with the
Hugging Face `datasets` schema in the file's metadata (so `load_dataset("parquet", ...)`
gives an Image column). Needs pyarrow (`pip install "augment[parquet]"`)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any, BinaryIO

from augment.errors import OutputError
from augment.stages.manifest import Record

EXTENSION = ".parquet"

_TEXT = ("path", "split", "label", "sha256", "recipe", "shard")
_NUMBERS = {"variant": "int64", "seed": "uint64"}  # a seed is any 64-bit unsigned value
_JSON = ("sources", "params", "soft_label")  # nested values, as JSON text


def _features() -> dict[str, Any]:
    value = {"_type": "Value"}
    return {
        "image": {"_type": "Image"},
        **{name: {**value, "dtype": "string"} for name in _TEXT},
        **{name: {**value, "dtype": dtype} for name, dtype in _NUMBERS.items()},
        **{name: {**value, "dtype": "string"} for name in _JSON},
    }


def write_shard(sink: BinaryIO, samples: Iterable[tuple[str, Record, bytes]]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError(
            "--output-format parquet needs pyarrow: pip install 'augment[parquet]'"
        ) from None
    rows = list(samples)
    image = pa.StructArray.from_arrays(
        [
            pa.array([data for _, _, data in rows], pa.binary()),
            pa.array([record["path"] for _, record, _ in rows], pa.string()),
        ],
        names=["bytes", "path"],
    )
    columns: dict[str, Any] = {"image": image}
    for name in _TEXT:
        columns[name] = pa.array([str(r[name]) for _, r, _ in rows], pa.string())
    for name, dtype in _NUMBERS.items():
        columns[name] = pa.array([int(r[name]) for _, r, _ in rows], getattr(pa, dtype)())
    for name in _JSON:
        columns[name] = pa.array(
            [None if r.get(name) is None else json.dumps(r[name]) for _, r, _ in rows],
            pa.string(),
        )
    table = pa.table(columns)
    metadata = {b"huggingface": json.dumps({"info": {"features": _features()}}).encode()}
    table = table.replace_schema_metadata(metadata)
    buffer = io.BytesIO()
    # Images are compressed already: compressing them again costs time and saves nothing.
    pq.write_table(table, buffer, compression="NONE", use_dictionary=False)
    sink.write(buffer.getvalue())
