"""Shards read back for the audit (augment/writers/read.py): a whole shard gives every sample,
in order, with the manifest's records; a shard cut anywhere (at a tar block boundary, where
tarfile itself would just stop, or inside a member; anywhere in a Parquet file) is a
DamagedShard, never a shorter shard read as if whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from augment.run import expand
from augment.stages.manifest import read_manifest
from augment.writers.read import DamagedShard, read_again, shard_samples
from tests.helpers import TEXTURES, small_run


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, small_recipe: Path) -> dict[str, Path]:
    pytest.importorskip("pyarrow")
    made = {}
    for layout in ("webdataset", "parquet"):
        out = tmp_path_factory.mktemp(layout) / "out"
        expand(TEXTURES, out, small_run(small_recipe, times=1, layout=layout, shard_size=100))
        made[layout] = out
    return made


@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_a_whole_shard_gives_every_sample_with_its_record(
    shards: dict[str, Path], layout: str
) -> None:
    out = shards[layout]
    records = [r for r in read_manifest(out) if r["split"] == "train"]
    shard = out / "shards" / records[0]["shard"]
    samples = list(shard_samples(shard))
    assert [s.key for s in samples] == sorted(r["key"] for r in records)
    by_key = {r["key"]: r for r in records}
    for sample in samples:
        record = by_key[sample.key]
        assert sample.record is not None and sample.record["path"] == record["path"]
        assert sample.record["sources"] == record["sources"]  # JSON columns parsed back
        assert sample.where is not None and read_again(sample.where) == sample.image
        assert not sample.problems


def test_a_tar_cut_anywhere_is_damaged(shards: dict[str, Path], tmp_path: Path) -> None:
    source = shards["webdataset"] / "shards" / "train-00000.tar"
    data = source.read_bytes()
    cut = tmp_path / "cut.tar"
    # Every block boundary of the first samples (where tarfile stops without a word), and
    # points inside blocks. (The zeros after the last member are the end marker and the
    # padding to tar's record size: a tar cut among them is whole.)
    for point in [*range(512, 20 * 512, 512), *range(700, 20 * 512, 1300)]:
        cut.write_bytes(data[:point])
        with pytest.raises(DamagedShard):
            list(shard_samples(cut))


def test_a_parquet_file_cut_anywhere_is_damaged(shards: dict[str, Path], tmp_path: Path) -> None:
    source = shards["parquet"] / "shards" / "train-00000.parquet"
    data = source.read_bytes()
    cut = tmp_path / "cut.parquet"
    for point in (0, 4, len(data) // 3, len(data) // 2, len(data) - 9, len(data) - 1):
        cut.write_bytes(data[:point])
        with pytest.raises(DamagedShard):
            list(shard_samples(cut))
    shutil.copy(source, cut)
    assert list(shard_samples(cut))  # the copy, whole, reads
