"""The store layer on S3 (the loopback server), memory:// and file://: listings with
ETags, create-only writes, conditional overwrites and deletes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from augment.stores.store import Changed, Store
from augment.stores.url import StoreUrl, is_url, protocol_of


@pytest.fixture(params=["s3", "memory", "file"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        return f"{bucket}/data"
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex[:8]}/data"
    return (tmp_path / "data").as_uri()


def test_a_listing_gives_path_size_and_a_version_that_changes_with_the_bytes(
    store_url: str,
) -> None:
    store = Store(store_url)
    store.create("b/two.bin", b"22")
    store.create("a.bin", b"1")
    listed = store.list()
    assert [(e.path, e.size) for e in listed] == [("a.bin", 1), ("b/two.bin", 2)]
    before = listed[0].etag
    store.put("a.bin", b"one")
    assert store.info("a.bin") is not None and store.info("a.bin").etag != before  # type: ignore[union-attr]
    if store.protocol == "s3":  # a single-part PUT's ETag is the MD5 of its bytes
        assert store.info("a.bin").etag == hashlib.md5(b"one").hexdigest()  # type: ignore[union-attr]
    assert store.list("b") == [store.info("b/two.bin")]
    assert store.info("missing") is None and Store(f"{store_url}/none").list() == []


def test_create_only_refuses_an_existing_name_and_keeps_its_bytes(store_url: str) -> None:
    store = Store(store_url)
    store.create("x.json", b"first")
    with pytest.raises(FileExistsError):
        store.create("x.json", b"second")
    assert store.read("x.json") == b"first"


def test_conditional_writes_and_deletes_need_the_version_read(store_url: str) -> None:
    store = Store(store_url)
    store.create("lease", b"a")
    seen = store.info("lease")
    assert seen is not None
    store.put("lease", b"bb", if_match=seen.etag)
    with pytest.raises(Changed):  # the version read is gone
        store.put("lease", b"ccc", if_match=seen.etag)
    with pytest.raises(Changed):
        store.delete("lease", if_match=seen.etag)
    now = store.info("lease")
    assert now is not None and store.read("lease") == b"bb"
    store.delete("lease", if_match=now.etag)
    assert store.info("lease") is None
    store.delete("lease")  # already gone: nothing to do


def test_a_local_create_never_leaves_a_half_object(tmp_path: Path) -> None:
    store = Store((tmp_path / "out").as_uri())
    store.create("a/b.bin", b"x" * 1000)
    with pytest.raises(FileExistsError):
        store.create("a/b.bin", b"y")
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["b.bin"]


@pytest.mark.parametrize(
    ("text", "protocol"),
    [("s3://b/k", "s3"), ("gs://b", "gs"), ("memory://x", "memory"), ("file:///t", "file")],
)
def test_urls_are_told_from_paths(text: str, protocol: str) -> None:
    assert protocol_of(text) == protocol and is_url(text)


@pytest.mark.parametrize("text", ["data/out", "/abs/out", "C:\\data", "s3:/collapsed"])
def test_paths_are_not_urls(text: str) -> None:
    assert not is_url(text)


def test_a_store_url_names_objects_in_it() -> None:
    assert StoreUrl("s3://b/out/") / "augment.json" == "s3://b/out/augment.json"
