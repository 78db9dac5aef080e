"""SRC and OUT in object storage, end to end, against a real S3 API on loopback (moto's
server, reached through s3fs as any S3 would be): the same manifest and header, byte for
byte, as a local run of the same files; a rerun that writes nothing; the lease; a killed run
resumed. docs/scale.md describes the design."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from augment.commands.report import format_summary
from augment.errors import DatasetError, OutputError
from augment.model import ExpandOptions
from augment.run import expand
from augment.stores.lease import LEASE_NAME
from augment.stores.publish import RUN_NAME, SHARDS_DIR
from augment.stores.run import expand_stores
from augment.stores.store import Store
from tests.helpers import (
    S3_ENVIRONMENT,
    TEXTURES,
    StoreRequests,
    as_from_a_terminal,
    augment_command,
    upload,
)

HEADER_FILES = ("manifest.jsonl", "augment.json", "classes.json", "README.md")


def _options(recipe: Path, **changes: object) -> ExpandOptions:
    return ExpandOptions(**{"times": 2, "recipe": str(recipe), "workers": 1, **changes})  # type: ignore[arg-type]


def _snapshot(url: str) -> dict[str, tuple[int, str, object]]:
    """Every object under `url`: size, ETag and LastModified, as a fresh listing has them."""
    store = Store(url)
    found = store.fs.find(store.root, detail=True)
    return {k: (v["size"], v["ETag"], v["LastModified"]) for k, v in found.items()}


@pytest.fixture()
def local_run(tmp_path: Path, small_recipe: Path) -> Path:
    out = tmp_path / "local"
    expand(TEXTURES, out, _options(small_recipe))
    return out


def test_s3_source_and_output_match_a_local_run(
    s3_bucket: str, small_recipe: Path, local_run: Path
) -> None:
    upload(TEXTURES, f"{s3_bucket}/textures")
    summary = expand_stores(f"{s3_bucket}/textures", f"{s3_bucket}/out", _options(small_recipe))
    out = Store(f"{s3_bucket}/out")
    for name in HEADER_FILES:
        assert out.read(name) == (local_run / name).read_bytes(), name
    records = [json.loads(line) for line in out.read("manifest.jsonl").splitlines()]
    assert summary.written == len(records) == summary.total
    for record in records:  # every output an object, its bytes the local run's
        assert out.read(record["path"]) == (local_run / record["path"]).read_bytes()
    assert out.info(LEASE_NAME) is None  # released
    state = json.loads(out.read(RUN_NAME))
    assert len(state["sources"]) == len(Store(f"{s3_bucket}/textures").list())
    assert str(summary.out) == f"{s3_bucket}/out"


@pytest.mark.slow
def test_a_labels_file_in_s3_gives_the_local_run_of_the_same_files(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """SRC as a labels file (its folder is the source), OUT a local folder: a rerun reads
    no source (only SRC's listing)."""
    flat = tmp_path / "flat"
    rows = ["path,label"]
    for image in sorted(TEXTURES.rglob("*.jpg"))[:20]:
        name = f"images/{image.parent.name}-{image.name}"
        (flat / name).parent.mkdir(parents=True, exist_ok=True)
        (flat / name).write_bytes(image.read_bytes())
        rows.append(f"{name},{image.parent.name}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    upload(flat, f"{s3_bucket}/flat")
    local, via_store = tmp_path / "local", tmp_path / "via-store"
    expand(flat / "labels.csv", local, _options(small_recipe))
    expand_stores(f"{s3_bucket}/flat/labels.csv", via_store, _options(small_recipe))
    for name in HEADER_FILES:
        assert (via_store / name).read_bytes() == (local / name).read_bytes(), name
    with StoreRequests() as requests:  # the rerun: decided from the listings
        again = expand_stores(f"{s3_bucket}/flat/labels.csv", via_store, _options(small_recipe))
    assert again.fast_path and again.out == via_store
    assert requests.of("GET") == [line for line in requests.of("GET") if "list-type" in line]


def test_a_local_out_beside_a_store_source_excludes_a_local_run(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    from augment.rerun.state import exclusive_run

    upload(TEXTURES, f"{s3_bucket}/textures")
    out = tmp_path / "out"
    out.mkdir()
    with exclusive_run(out), pytest.raises(OutputError, match="another augment run"):
        expand_stores(f"{s3_bucket}/textures", out, _options(small_recipe))
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_a_source_split_into_folders_in_s3_gives_the_local_run(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """SRC/train|val/<class>/<image>: the source's own split, kept through the store."""
    split = tmp_path / "split"
    for n, image in enumerate(sorted(TEXTURES.rglob("*.jpg"))[:24]):
        target = split / ("val" if n % 4 == 0 else "train") / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.read_bytes())
    upload(split, f"{s3_bucket}/split")
    local = tmp_path / "local"
    expand(split, local, _options(small_recipe))
    expand_stores(f"{s3_bucket}/split", f"{s3_bucket}/out", _options(small_recipe))
    for name in HEADER_FILES:
        assert Store(f"{s3_bucket}/out").read(name) == (local / name).read_bytes(), name


@pytest.mark.slow
def test_a_rerun_of_an_unchanged_store_run_writes_nothing(
    s3_bucket: str, small_recipe: Path
) -> None:
    upload(TEXTURES, f"{s3_bucket}/textures")
    src, out = f"{s3_bucket}/textures", f"{s3_bucket}/out"
    first = expand_stores(src, out, _options(small_recipe))
    before = _snapshot(out)
    with StoreRequests() as requests:
        summary = expand_stores(src, out, _options(small_recipe))
    assert summary.fast_path and summary.written == 0 and summary.reused == summary.total
    # Reported as the full run reported it, splits and classes in the same order.
    assert format_summary(summary).splitlines()[:-1] == format_summary(first).splitlines()[:-1]
    assert _snapshot(out) == before  # no object new, gone, or rewritten
    # The only writes: the lease, made create-only and removed at the end.
    writes = requests.writes()
    assert len(writes) == 2, writes
    assert all(LEASE_NAME in line for line in writes)
    assert not any("/textures/" in line for line in requests.of("GET"))  # no source read


@pytest.mark.slow
def test_an_output_deleted_from_the_store_is_made_again(s3_bucket: str, small_recipe: Path) -> None:
    src, out = str(TEXTURES), f"{s3_bucket}/out"
    expand_stores(src, out, _options(small_recipe))
    store = Store(out)
    manifest = store.read("manifest.jsonl")
    lost = json.loads(manifest.splitlines()[0])["path"]
    kept = store.read(lost)
    store.delete(lost)
    with StoreRequests() as requests:
        summary = expand_stores(src, out, _options(small_recipe))
    assert store.read(lost) == kept and store.read("manifest.jsonl") == manifest
    assert summary.written == 1
    assert [w for w in requests.of("PUT") if ".jpg" in w or ".png" in w] == [
        w for w in requests.of("PUT") if lost in w
    ]


@pytest.mark.slow
def test_a_removed_source_removes_its_outputs_and_rewrites_nothing_else(
    s3_bucket: str, small_recipe: Path
) -> None:
    upload(TEXTURES, f"{s3_bucket}/textures")
    src, out = f"{s3_bucket}/textures", f"{s3_bucket}/out"
    expand_stores(src, out, _options(small_recipe))
    gone = "brick/brick_01.jpg"
    before = [json.loads(line) for line in Store(out).read("manifest.jsonl").splitlines()]
    its_outputs = {r["path"] for r in before if r["sources"][0]["path"] == gone}
    Store(src).delete(gone)
    with StoreRequests() as requests:
        summary = expand_stores(src, out, _options(small_recipe))
    after = [json.loads(line) for line in Store(out).read("manifest.jsonl").splitlines()]
    assert after == [r for r in before if r["path"] not in its_outputs]  # splits kept
    assert summary.removed == len(its_outputs) > 0
    assert all(Store(out).info(path) is None for path in its_outputs)
    assert [w for w in requests.of("PUT") if ".jpg" in w or ".png" in w] == []


@pytest.mark.slow
def test_foreign_objects_beside_a_forced_store_output_are_never_touched(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    src, out = tmp_path / "src", f"{s3_bucket}/out"
    upload(TEXTURES, src.as_uri())
    Store(out).create("notes.txt", b"someone else's")
    expand_stores(src, out, _options(small_recipe, force=True))
    (src / "brick" / "brick_01.jpg").unlink()  # the rerun removes what it made of it
    summary = expand_stores(src, out, _options(small_recipe, force=True))
    assert summary.removed > 0
    assert Store(out).read("notes.txt") == b"someone else's"


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_other_stores_give_the_same_manifest(
    scheme: str, small_recipe: Path, local_run: Path, tmp_path: Path
) -> None:
    """memory:// (fsspec's own) and file:// go through the same store layer as s3://."""
    base = f"memory://run-{tmp_path.name}" if scheme == "memory" else tmp_path.as_uri()
    upload(TEXTURES, f"{base}/textures")
    expand_stores(f"{base}/textures", f"{base}/out", _options(small_recipe))
    again = expand_stores(f"{base}/textures", f"{base}/out", _options(small_recipe))
    assert again.fast_path
    for name in HEADER_FILES:
        assert Store(f"{base}/out").read(name) == (local_run / name).read_bytes(), name


@pytest.mark.slow
def test_after_a_run_that_died_the_next_one_leaves_only_its_own_objects(
    s3_bucket: str, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 completes; run 2 (other options) dies mid-shard, its outputs written and not
    committed; run 3 has run 1's inputs again: it is not taken for unchanged, and removes
    what run 2 left, the pending shard's outputs too."""
    from augment.stores import publish

    src, out = str(TEXTURES), f"{s3_bucket}/out"
    expand_stores(src, out, _options(small_recipe))
    commit, commits = publish._create_or_keep, []

    def dies_before_the_second_commit(store: Store, name: str, data: bytes) -> None:
        if name.startswith(SHARDS_DIR) and commits:
            raise KeyboardInterrupt  # stands for the process dying here
        commit(store, name, data)
        if name.startswith(SHARDS_DIR):
            commits.append(name)

    monkeypatch.setattr(publish, "_create_or_keep", dies_before_the_second_commit)
    with pytest.raises(KeyboardInterrupt):
        expand_stores(src, out, _options(small_recipe, times=3))
    monkeypatch.setattr(publish, "_create_or_keep", commit)
    assert Store(out).info(RUN_NAME) is None  # no rerun may trust OUT now
    assert Store(out).list(".augment/pending")  # the shard it died in
    summary = expand_stores(src, out, _options(small_recipe))
    assert not summary.fast_path
    expand_stores(src, f"{s3_bucket}/fresh", _options(small_recipe))
    own = {e.path for e in Store(out).list()}
    assert own == {e.path for e in Store(f"{s3_bucket}/fresh").list()}


@pytest.mark.slow
def test_a_run_that_died_mid_shard_is_resumed_by_the_same_command(
    s3_bucket: str, small_recipe: Path, monkeypatch: pytest.MonkeyPatch, local_run: Path
) -> None:
    """The quick form of the SIGKILL test below: the shard it died in is pending, its
    outputs written; the same command commits it and ends with the local run's manifest."""
    from augment.stores import publish

    src, out = str(TEXTURES), f"{s3_bucket}/out"
    commit = publish._create_or_keep

    def dies_at_the_third_commit(store: Store, name: str, data: bytes) -> None:
        if name.startswith(SHARDS_DIR) and len(Store(out).list(SHARDS_DIR)) == 2:
            raise KeyboardInterrupt  # stands for the process dying here
        commit(store, name, data)

    monkeypatch.setattr(publish, "_create_or_keep", dies_at_the_third_commit)
    with pytest.raises(KeyboardInterrupt):
        expand_stores(src, out, _options(small_recipe))
    monkeypatch.setattr(publish, "_create_or_keep", commit)
    assert len(Store(out).list(".augment/pending")) == 1
    expand_stores(src, out, _options(small_recipe))
    assert Store(out).read("manifest.jsonl") == (local_run / "manifest.jsonl").read_bytes()
    assert Store(out).list(".augment/pending") == []


@pytest.mark.slow  # tests/stores/test_lease.py has the quick ones
def test_a_live_lease_is_refused_and_an_expired_one_taken_over(
    s3_bucket: str, small_recipe: Path
) -> None:
    upload(TEXTURES, f"{s3_bucket}/textures")
    src, out = f"{s3_bucket}/textures", f"{s3_bucket}/out"
    lease = {"owner": "another-run", "expires": time.time() + 600}
    Store(out).create(LEASE_NAME, json.dumps(lease).encode())
    args = ["expand", src, out, "--recipe", str(small_recipe), "--times", "1", "--workers", "1"]
    refused = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "in use by another run" in refused.stderr and "Traceback" not in refused.stderr
    assert Store(out).list() == [Store(out).info(LEASE_NAME)]  # nothing else written

    Store(out).put(LEASE_NAME, json.dumps({**lease, "expires": time.time() - 1}).encode())
    taken = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=120)
    assert taken.returncode == 0, taken.stderr
    assert f"wrote {out}" in taken.stdout
    assert Store(out).info(LEASE_NAME) is None
    assert Store(out).info("manifest.jsonl") is not None


@pytest.mark.slow
def test_a_store_output_beside_foreign_objects_is_refused(
    s3_bucket: str, small_recipe: Path
) -> None:
    Store(f"{s3_bucket}/out").create("notes.txt", b"someone else's")
    args = ["expand", str(TEXTURES), f"{s3_bucket}/out", "--recipe", str(small_recipe)]
    refused = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "not an augment output" in refused.stderr and "Traceback" not in refused.stderr
    assert [e.path for e in Store(f"{s3_bucket}/out").list()] == ["notes.txt"]


@pytest.mark.slow
def test_errors_name_the_urls_not_the_working_copy(s3_bucket: str, small_recipe: Path) -> None:
    upload(TEXTURES, f"{s3_bucket}/textures")
    expand_stores(f"{s3_bucket}/textures", f"{s3_bucket}/out", _options(small_recipe))
    with pytest.raises(DatasetError, match=f"source {s3_bucket}/out is an augment output"):
        expand_stores(f"{s3_bucket}/out", f"{s3_bucket}/again", _options(small_recipe))
    with pytest.raises(OutputError, match="overlap"):
        expand_stores(f"{s3_bucket}/textures", f"{s3_bucket}/textures/out", _options(small_recipe))


@pytest.mark.slow
def test_a_killed_store_run_resumes_from_its_committed_shards(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    """A real SIGKILL while the outputs are published: the rerun takes over the dead run's
    lease once it expires, skips the shards it committed, and ends with the manifest a local
    run writes."""
    src, out = str(TEXTURES), f"{s3_bucket}/out"
    args = ["expand", src, out, "--recipe", str(small_recipe), "--times", "4", "--workers", "1"]
    run = subprocess.Popen(augment_command(*args), stdout=subprocess.DEVNULL)
    store = Store(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if len(store.list(SHARDS_DIR)) >= 3:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert store.info(RUN_NAME) is None and store.info(LEASE_NAME) is not None
    committed = {e.path for e in store.list(SHARDS_DIR)}

    # The dead run's lease, aged past its expiry (as a minute's wait would leave it).
    held = json.loads(store.read(LEASE_NAME))
    store.put(LEASE_NAME, json.dumps({**held, "expires": time.time() - 1}).encode())
    with StoreRequests() as requests:
        resumed = subprocess.run(augment_command(*args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    local = tmp_path / "local"
    expand(TEXTURES, local, _options(small_recipe, times=4))
    assert store.read("manifest.jsonl") == (local / "manifest.jsonl").read_bytes()
    rewritten = [w for w in requests.writes() if any(name in w for name in committed)]
    assert not rewritten  # a committed shard is not written again
    outputs_put = [w for w in requests.of("PUT") if ".jpg" in w]
    assert len(outputs_put) < len((local / "manifest.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_an_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    pytest.importorskip("s3fs", reason="s3:// needs s3fs: pip install -e '.[test]'")
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        **S3_ENVIRONMENT,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    args = ["expand", str(TEXTURES), "s3://no-such-bucket/out", "--times", "1"]
    failed = subprocess.run(augment_command(*args), env=env, capture_output=True, text=True)
    assert failed.returncode == 2, failed.stderr
    assert "Could not connect" in failed.stderr and "Traceback" not in failed.stderr
    assert "rerun the same command" in failed.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_store_run_releases_the_lease_and_commits_no_half_shard(
    s3_bucket: str, small_recipe: Path, tmp_path: Path
) -> None:
    out = f"{s3_bucket}/out"
    args = ["expand", str(TEXTURES), out, "--recipe", str(small_recipe), "--times", "4"]
    command = augment_command(*args)
    run = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=as_from_a_terminal
    )
    store = Store(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if len(store.list(SHARDS_DIR)) >= 3:
            run.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert b"Traceback" not in stderr
    assert store.info(LEASE_NAME) is None  # released: the next run need not wait
    assert store.info(RUN_NAME) is None
    # Every committed shard's outputs are all there.
    there = {e.path: e.size for e in store.list()}
    for record in store.list(SHARDS_DIR):
        for line in store.read(record.path).splitlines():
            output = json.loads(line)
            assert there.get(output["path"]) == output["size"]
    resumed = subprocess.run(augment_command(*args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    local = tmp_path / "local"
    expand(TEXTURES, local, _options(small_recipe, times=4))
    assert store.read("manifest.jsonl") == (local / "manifest.jsonl").read_bytes()
