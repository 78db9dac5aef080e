"""The store placement behind `ShardFile`, on moto's S3 server on loopback: create-only
uploads, the shard first and its records last; a task run again after its worker died
between the two uploads goes on; other bytes under the shard's name are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from augment.errors import OutputError
from augment.writers.shards import ShardFile, records_name
from augment.writers.store_shards import StorePlacement, StoreShards


def _write(url: str, tmp_path: Path, image: bytes) -> None:
    shard = ShardFile(tmp_path, "train-00000.tar", "webdataset", "inputs", StorePlacement(url))
    shard.add({"path": "train/a/x.jpg", "split": "train", "label": "a"}, image)
    shard.commit()


def test_a_shard_is_uploaded_then_its_records_and_read_back_as_committed(
    s3_bucket: str, tmp_path: Path
) -> None:
    url = f"{s3_bucket}/out"
    _write(url, tmp_path, b"\xff\xd8 image")
    shards = StoreShards(url)
    assert shards.committed("train-00000.tar", "inputs") == []
    assert shards.committed("train-00000.tar", "other inputs") is None
    assert [r["path"] for r in shards.records("train-00000.tar")] == ["train/a/x.jpg"]
    assert not list(tmp_path.iterdir())  # nothing written locally, no temporary left


def test_a_task_run_again_after_its_shard_was_uploaded_goes_on(
    s3_bucket: str, tmp_path: Path
) -> None:
    url = f"{s3_bucket}/out"
    _write(url, tmp_path, b"\xff\xd8 image")
    shards = StoreShards(url)
    shards.store.delete(records_name("train-00000.tar"))  # died between the two uploads
    _write(url, tmp_path, b"\xff\xd8 image")  # the same bytes: taken as written
    assert StoreShards(url).committed("train-00000.tar", "inputs") == []
    shards.store.delete(records_name("train-00000.tar"))
    with pytest.raises(OutputError, match="exists with other bytes"):
        _write(url, tmp_path, b"\xff\xd8 other image")
    assert StoreShards(url).committed("train-00000.tar", "inputs") is None  # not committed
