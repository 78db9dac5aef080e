"""Sharded outputs in a store OUT, written by the workers themselves, against a real S3 API
on loopback (moto's server through s3fs): the shards and the manifest byte for byte a local
sharded run's; read back from the store by `webdataset` and `pyarrow`; a rerun that writes
nothing but its lease; a killed run resumed, its committed shards kept."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from augment.cli import main
from augment.errors import OutputError
from augment.model import ExpandOptions
from augment.run import expand
from augment.stores.lease import LEASE_NAME
from augment.stores.run import expand_stores
from augment.stores.store import Store
from augment.writers.shards import RECORDS_DIR, SHARDS_DIR
from tests.helpers import DETECTION, TEXTURES, StoreRequests, augment_command, upload

HEADER_FILES = ("manifest.jsonl", "augment.json")


def _options(recipe: Path | str, layout: str, **changes: object) -> ExpandOptions:
    chosen = {"times": 2, "recipe": str(recipe), "workers": 1, "layout": layout, "shard_size": 10}
    return ExpandOptions(**{**chosen, **changes})  # type: ignore[arg-type]


def _local_files(out: Path) -> dict[str, bytes]:
    """A local sharded run's shards, records and header files, by their path in OUT."""
    found = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for folder in (SHARDS_DIR, RECORDS_DIR)
        for p in (out / folder).iterdir()
    }
    return found | {name: (out / name).read_bytes() for name in HEADER_FILES}


def _store_files(url: str) -> dict[str, bytes]:
    store = Store(url)
    found = [*store.list(SHARDS_DIR), *store.list(RECORDS_DIR)]
    return {e.path: store.read(e.path) for e in found} | {n: store.read(n) for n in HEADER_FILES}


@pytest.mark.parametrize(
    ("sample", "layout"),
    [
        (TEXTURES, "webdataset"),
        # Parquet's bytes in the fast lane: the file:// store test below.
        pytest.param(TEXTURES, "parquet", marks=pytest.mark.slow),
        (DETECTION, "webdataset"),
    ],
)
@pytest.mark.slow
def test_workers_write_the_local_sharded_run_s_bytes_to_the_store(
    s3_bucket: str, small_recipe: Path, tmp_path: Path, sample: Path, layout: str
) -> None:
    if layout == "parquet":
        pytest.importorskip("pyarrow")
    recipe = "detection" if sample == DETECTION else small_recipe  # a pad that shows no image
    local = tmp_path / "local"
    expand(sample, local, _options(recipe, layout))
    upload(sample, f"{s3_bucket}/src")
    src, out = f"{s3_bucket}/src", f"{s3_bucket}/out"
    with StoreRequests() as requests:
        summary = expand_stores(src, out, _options(recipe, layout, workers=2))
    assert _store_files(out) == _local_files(local)
    # Each image read twice: by the driver's ingest, then by its worker.
    images = [e.path for e in Store(src).list() if e.path.endswith((".jpg", ".png"))]
    reads = [line for line in requests.of("GET") if "/src/" in line]
    assert all(sum(f"/src/{i} " in r for r in reads) == 2 for i in images)
    assert summary.written == summary.total > 0
    assert Store(out).info(LEASE_NAME) is None


def test_the_driver_ingests_a_store_source_from_its_listing_without_a_local_copy(
    s3_bucket: str, small_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class folders in S3: the driver's ingest reads each source once through the store
    (sha256, header, pHash), its worker once more; SRC is never copied to a local folder.
    An unchanged rerun reads no source."""
    import augment.stores.run

    def no_copy(*args: object) -> object:
        raise AssertionError("SRC was copied to a local folder")

    monkeypatch.setattr(augment.stores.run, "stage", no_copy)
    local = tmp_path / "local"
    options = _options(small_recipe, "webdataset", shard_size=20)
    expand(TEXTURES, local, options)
    upload(TEXTURES, f"{s3_bucket}/src")
    src, out = f"{s3_bucket}/src", f"{s3_bucket}/out"
    with StoreRequests() as requests:
        expand_stores(src, out, dataclasses.replace(options, workers=2))
    assert _store_files(out) == _local_files(local)
    reads = Counter(g.split()[6] for g in requests.of("GET") if "/src/" in g)
    listed = [e.path for e in Store(src).list()]
    assert sorted(reads) == sorted(f"/{src.removeprefix('s3://')}/{p}" for p in listed)
    assert set(reads.values()) == {2}  # the driver's ingest, then the source's worker
    with StoreRequests() as requests:
        expand_stores(src, out, options)
    assert not [g for g in requests.of("GET") if "/src/" in g]


def test_the_command_writes_a_local_source_s_shards_to_a_store(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    expand(TEXTURES, local, _options(small_recipe, "webdataset"))
    args = ["expand", str(TEXTURES), f"{s3_bucket}/out", "--recipe", str(small_recipe)]
    args += ["--times", "2", "-j", "1", "--output-format", "webdataset", "--shard-size", "10"]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert _store_files(f"{s3_bucket}/out") == _local_files(local)


@pytest.mark.slow
def test_shards_read_back_from_the_store_by_webdataset_and_pyarrow(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """pyarrow reads a shard through fsspec; webdataset a shard downloaded (it opens URLs
    of its own kinds, not an fsspec file)."""
    wds = pytest.importorskip("webdataset")
    pq = pytest.importorskip("pyarrow.parquet")
    for layout in ("webdataset", "parquet"):
        out = f"{s3_bucket}/{layout}"
        expand_stores(TEXTURES, out, _options(small_recipe, layout))
        store = Store(out)
        manifest = [json.loads(line) for line in store.read("manifest.jsonl").splitlines()]
        seen: list[str] = []
        for entry in store.list(SHARDS_DIR):
            if layout == "webdataset":
                shard = tmp_path / entry.path.rpartition("/")[2]
                shard.write_bytes(store.read(entry.path))
                samples = wds.WebDataset(str(shard), shardshuffle=False)
                seen += [json.loads(s["json"])["path"] for s in samples]
            else:
                with store.fs.open(store.key(entry.path), "rb") as f:  # through fsspec
                    seen += pq.read_table(f).column("path").to_pylist()
        assert sorted(seen) == [r["path"] for r in manifest]


@pytest.mark.slow
def test_a_rerun_writes_nothing_but_its_lease(s3_bucket: str, small_recipe: Path) -> None:
    upload(TEXTURES, f"{s3_bucket}/src")
    src, out = f"{s3_bucket}/src", f"{s3_bucket}/out"
    options = _options(small_recipe, "webdataset")
    expand_stores(src, out, options)
    before = {e.path: e for e in Store(out).list()}
    with StoreRequests() as requests:
        summary = expand_stores(src, out, options)
    writes = requests.writes()
    assert len(writes) == 2 and all(LEASE_NAME in w for w in writes), writes  # PUT, DELETE
    assert not [g for g in requests.of("GET") if "/src/" in g]  # no source read
    assert {e.path: e for e in Store(out).list()} == before
    assert summary.written == 0 and summary.reused == summary.total


@pytest.mark.slow
def test_a_changed_source_rewrites_only_its_shard(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    upload(TEXTURES, f"{s3_bucket}/src")
    src, out = f"{s3_bucket}/src", f"{s3_bucket}/out"
    options = _options(small_recipe, "webdataset")
    expand_stores(src, out, options)
    changed = sorted(TEXTURES.rglob("*.jpg"))[0]
    rel = changed.relative_to(TEXTURES).as_posix()
    Store(src).put(rel, (TEXTURES / sorted(TEXTURES.rglob("*.jpg"))[1]).read_bytes())
    with StoreRequests() as requests:
        expand_stores(src, out, options)
    shards_put = {w.split()[6] for w in requests.of("PUT") if f"/{SHARDS_DIR}/" in w}
    assert len(shards_put) == 1, shards_put
    # The driver reads no source: the ingest of each version is in the run state by its
    # ETag, and the changed source's new bytes are another source's (the same ETag). The
    # worker reads the sources of the one shard it makes, once each.
    shard = shards_put.pop().rpartition("/")[2]
    manifest = [json.loads(line) for line in Store(out).read("manifest.jsonl").splitlines()]
    in_shard = {s["path"] for r in manifest if r["shard"] == shard for s in r["sources"]}
    reads = Counter(g.split()[6].split("/src/", 1)[1] for g in requests.of("GET") if "/src/" in g)
    assert reads == Counter(in_shard) and rel in in_shard
    local_src = tmp_path / "src"  # the same two runs on local folders
    upload(TEXTURES, local_src.as_uri())
    expand(local_src, tmp_path / "local", options)
    (local_src / rel).write_bytes(Store(src).read(rel))
    expand(local_src, tmp_path / "local", options)
    assert _store_files(out) == _local_files(tmp_path / "local")


@pytest.mark.slow
def test_a_killed_sharded_store_run_resumes_keeping_committed_shards(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """A real SIGKILL mid-run: the rerun (the dead run's lease aged past its expiry) writes
    no committed shard again and ends with a local sharded run's bytes."""
    out = f"{s3_bucket}/out"
    args = ["expand", str(TEXTURES), out, "--recipe", str(small_recipe), "--times", "4"]
    args += ["--workers", "1", "--output-format", "webdataset", "--shard-size", "5", "-q"]
    run = subprocess.Popen(augment_command(*args), stdout=subprocess.DEVNULL)
    store = Store(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if len(store.list(RECORDS_DIR)) >= 3:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    committed = {e.path for e in store.list(RECORDS_DIR)}
    held = json.loads(store.read(LEASE_NAME))
    store.put(LEASE_NAME, json.dumps({**held, "expires": time.time() - 1}).encode())
    with StoreRequests() as requests:
        resumed = subprocess.run(augment_command(*args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    names = {c.rpartition("/")[2].split(".")[0] for c in committed}
    rewritten = [w for w in requests.writes() if any(f"/{n}." in w for n in names)]
    assert not rewritten, rewritten
    local = tmp_path / "local"
    expand(TEXTURES, local, _options(small_recipe, "webdataset", times=4, shard_size=5))
    assert _store_files(out) == _local_files(local)


def test_force_never_writes_into_a_foreign_shards_prefix(
    s3_bucket: str, small_recipe: Path
) -> None:
    out = Store(f"{s3_bucket}/out")
    out.put("shards/train-00000.tar", b"theirs")
    options = dataclasses.replace(_options(small_recipe, "webdataset"), force=True)
    with pytest.raises(OutputError, match="already holds shards/"):
        expand_stores(TEXTURES, out.url, options)
    assert out.read("shards/train-00000.tar") == b"theirs"
    assert [e.path for e in out.list()] == ["shards/train-00000.tar"]  # nor the lease left


@pytest.mark.slow
def test_a_store_source_into_a_local_output_gives_the_local_run_s_shards(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    local = tmp_path / "local"
    expand(TEXTURES, local, _options(small_recipe, "parquet"))
    upload(TEXTURES, f"{s3_bucket}/src")
    out = tmp_path / "out"  # a file:// store: the workers write the shards create-only
    expand_stores(f"{s3_bucket}/src", out, _options(small_recipe, "parquet"))
    assert _local_files(out) == _local_files(local)


def test_a_memory_store_is_refused_for_sharded_outputs(small_recipe: Path) -> None:
    with pytest.raises(OutputError, match="private to one process"):
        expand_stores(TEXTURES, "memory://out", _options(small_recipe, "webdataset"))
