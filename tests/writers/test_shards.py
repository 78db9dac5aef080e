"""Sharded outputs: WebDataset tar shards read back by the `webdataset` library, Parquet by
pyarrow and Hugging Face `datasets`; every sample listed with its shard; byte-identical on
a second packing, and a rerun that changes nothing rewrites no shard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.expand import ExpandSummary
from augment.stages.manifest import read_manifest
from augment.writers.shards import SHARD_MANIFEST_NAME, SHARDS_DIR, write_shards
from tests.helpers import DIGITS, file_tree


@pytest.fixture
def out(tmp_path: Path, expanded: tuple[Path, ExpandSummary]) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(expanded[0], copy)
    return copy


def listed(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / SHARD_MANIFEST_NAME).read_text().splitlines()]


def test_webdataset_shards_read_back_with_the_webdataset_library(out: Path) -> None:
    wds = pytest.importorskip("webdataset")
    write_shards(out, "webdataset", shard_size=16)
    records = {r["path"]: r for r in read_manifest(out)}
    shards = sorted((out / SHARDS_DIR).glob("*.tar"))
    assert len(shards) > 2 and {p.name.split("-")[0] for p in shards} >= {"train", "validation"}
    seen = {}
    for shard in shards:
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["json"])
            image = next(v for k, v in sample.items() if k in {"jpg", "png", "webp"})
            assert image == (out / meta["path"]).read_bytes()
            assert meta["label"] == records[meta["path"]]["label"]
            assert meta["split"] == records[meta["path"]]["split"]
            assert meta["sources"] == records[meta["path"]]["sources"]  # lineage
            assert meta["shard"] == shard.name
            seen[meta["path"]] = meta
    assert set(seen) == set(records)  # every sample, once
    assert {r["path"]: r["shard"] for r in listed(out)} == {p: m["shard"] for p, m in seen.items()}
    assert all(len(list(wds.WebDataset(str(s), shardshuffle=False))) <= 16 for s in shards)


def test_parquet_shards_read_back_with_pyarrow_and_datasets(out: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    write_shards(out, "parquet", shard_size=40)
    records = {r["path"]: r for r in read_manifest(out)}
    shards = sorted((out / SHARDS_DIR).glob("*.parquet"))
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    assert sorted(r["path"] for r in rows) == sorted(records)
    for row in rows:
        assert row["image"]["bytes"] == (out / row["path"]).read_bytes()
        assert row["label"] == records[row["path"]]["label"]
        assert json.loads(row["sources"]) == records[row["path"]]["sources"]
    train = sorted(str(s) for s in shards if s.name.startswith("train-"))
    loaded = datasets.load_dataset(
        "parquet", data_files={"train": train}, split="train", cache_dir=str(tmp_path / "hf")
    )
    first = loaded[0]
    assert isinstance(first["image"], Image.Image)
    with Image.open(out / first["path"]) as on_disk:
        assert first["image"].size == on_disk.size
    assert len(loaded) == sum(1 for r in records.values() if r["split"] == "train")


@pytest.mark.parametrize("output_format", ["webdataset", "parquet"])
def test_packing_again_is_byte_identical_and_rewrites_nothing(
    out: Path, tmp_path: Path, output_format: str
) -> None:
    pytest.importorskip("pyarrow")
    assert write_shards(out, output_format, shard_size=20) > 0
    first = file_tree(out / SHARDS_DIR)
    stamps = {p: p.stat().st_mtime_ns for p in (out / SHARDS_DIR).iterdir()}
    other = tmp_path / "other"
    shutil.copytree(out, other)
    shutil.rmtree(other / SHARDS_DIR)
    write_shards(other, output_format, shard_size=20)
    assert file_tree(other / SHARDS_DIR) == first  # same outputs, same shard bytes
    assert write_shards(out, output_format, shard_size=20) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / SHARDS_DIR).iterdir()} == stamps


def test_a_changed_output_is_refused_not_packed(out: Path) -> None:
    from augment.errors import ManifestError

    victim = out / read_manifest(out)[0]["path"]
    victim.write_bytes(victim.read_bytes() + b"tampered")
    with pytest.raises(ManifestError, match="sha256"):
        write_shards(out, "webdataset")


def test_expand_with_output_format_webdataset(tmp_path: Path, small_recipe: Path) -> None:
    pytest.importorskip("webdataset")
    args = ["expand", str(DIGITS), str(tmp_path / "out"), "-n", "2", "--recipe", str(small_recipe)]
    args += ["--output-format", "webdataset", "--shard-size", "25", "-j", "1", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out")
    assert {r["path"] for r in listed(tmp_path / "out")} == {r["path"] for r in manifest}
    assert max(int(p.stem.split("-")[1]) for p in (tmp_path / "out/shards").glob("*.tar")) >= 1
    # The same command again: the outputs did not change, so no shard is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / SHARDS_DIR).iterdir()}
    assert CliRunner().invoke(main, args).exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / SHARDS_DIR).iterdir()} == stamps
