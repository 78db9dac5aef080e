"""The rerun state's files (augment/rerun/state.py): what a rerun may trust, and damage."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import augment.rerun.state as state_module
from augment.layout import OUTPUTS_STATE_NAME, STATE_NAME
from augment.rerun.state import RACY_NS, STATE_FORMAT, SourceCache, load_state
from augment.stages.ingest import ingest
from augment.stages.plan import Fingerprints
from tests.helpers import DIGITS

FP = Fingerprints(preprocess="p" * 16, recipe="r" * 16)


def test_source_cache_trusts_only_settled_unchanged_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    old = src / "a" / "old.png"
    fresh = src / "a" / "fresh.png"
    old.write_bytes((DIGITS / "1" / sorted(os.listdir(DIGITS / "1"))[0]).read_bytes())
    fresh.write_bytes((DIGITS / "2" / sorted(os.listdir(DIGITS / "2"))[0]).read_bytes())
    settled = time.time_ns() - 10 * RACY_NS
    os.utime(old, ns=(settled, settled))

    cache = SourceCache(str(src))
    first = ingest(src, cache=cache)
    assert cache.reads == 2
    # The just-written file could still change within its mtime tick: not remembered.
    assert set(cache.entries) == {"a/old.png"}
    second = ingest(src, cache=cache)
    assert cache.hits == 1 and cache.reads == 3
    assert second.originals == first.originals

    # Same size, new bytes, new mtime: the stamp no longer matches, so it is read again.
    data = bytearray(old.read_bytes())
    data[-5] ^= 1
    old.write_bytes(bytes(data))
    os.utime(old, ns=(settled + 1, settled + 1))
    third = ingest(src, cache=cache)
    assert cache.hits == 1
    assert {o.path: o.sha256 for o in third.originals}["a/old.png"] != {
        o.path: o.sha256 for o in first.originals
    }["a/old.png"]


def _write_state(out: Path, doc: dict[str, object], outputs: list[str]) -> None:
    (out / STATE_NAME).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    (out / OUTPUTS_STATE_NAME).write_text("".join(line + "\n" for line in outputs))


def test_damaged_state_is_ignored_entry_by_entry(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / ".augment").mkdir(parents=True)
    good = {"stamp": [1, 2, 3, 4], "sha256": "ab"}
    doc = {
        "format": STATE_FORMAT,
        "root": str(tmp_path.resolve()),
        "sources": {"a/x.png": {"stamp": "oops"}, "a/y.png": [1]},
    }
    outputs = [
        json.dumps({"path": "train/a/x.png", **good}),
        json.dumps({"path": "train/a/y.png", "sha256": 5}),
    ]
    _write_state(out, doc, outputs)
    state = load_state(out, tmp_path)
    usable = {path: entry for path, entry in state.outputs if entry is not None}
    assert state.sources.entries == {} and usable == {"train/a/x.png": good}
    # A line without a path, or not an object, drops the outputs' entries: hashed again.
    for bad in ('{"stamp": [1, 2, 3, 4], "sha256": "ab"}', "[1, 2]", "{not json"):
        _write_state(out, doc, [*outputs, bad])
        assert not len(load_state(out, tmp_path).outputs)
    (out / STATE_NAME).write_text("{not json")
    assert not len(load_state(out, tmp_path).outputs)


def test_source_entries_are_saved_back_as_they_were_read(tmp_path: Path) -> None:
    """The cache holds source entries in a compact form of its own: a state read and saved
    again has the same bytes, and an entry written with other fields (another version) is
    dropped, so its file is read again."""
    out = tmp_path / "out"
    (out / ".augment").mkdir(parents=True)
    content = {"sha256": "ab" * 32, "format": "PNG", "width": 3000, "height": 2000}
    stamp = [1234, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789, 42]
    good = {"stamp": stamp, "original": content}
    doc = {
        "format": STATE_FORMAT,
        "root": str(tmp_path.resolve()),
        "sources": {
            "a/x.png": good,
            "a/y.png": {**good, "original": {**content, "mode": "RGB"}},
            "a/z.png": {**good, "original": {"sha256": "cd" * 32}},
        },
    }
    _write_state(out, doc, [])
    state = load_state(out, tmp_path)
    assert set(state.sources.entries) == {"a/x.png"}
    state_module.save_state(out, state, [])
    expected = {**doc, "sources": {"a/x.png": good}}
    assert (out / STATE_NAME).read_text() == json.dumps(expected, separators=(",", ":")) + "\n"


def test_a_state_with_damaged_outputs_keeps_its_sources(tmp_path: Path) -> None:
    """The outputs' entries are read when first used: if they turn out damaged, none of them
    is used (those files are hashed again), while the sources still spare their files a
    read."""
    out = tmp_path / "out"
    (out / ".augment").mkdir(parents=True)
    content = {"sha256": "ab" * 32, "format": "PNG", "width": 30, "height": 20}
    doc = {
        "format": STATE_FORMAT,
        "root": str(tmp_path.resolve()),
        "sources": {"a/x.png": {"stamp": [1, 2, 3, 4], "original": content}},
    }
    lines = [
        json.dumps({"path": f"train/a/{n}.png", "stamp": [1, 2, 3, 4], "sha256": "cd"})
        for n in range(9)
    ]
    for damaged in ([*lines[:5], lines[5][:20]], [*lines, "{"]):
        _write_state(out, doc, damaged)
        state = load_state(out, tmp_path)
        assert set(state.sources.entries) == {"a/x.png"}
        assert not len(state.outputs)
    _write_state(out, doc, lines)
    assert len(load_state(out, tmp_path).outputs) == 9
