"""The worker of a sharded run (augment/stages/shard_worker.py): a source is all in its shard
or not at all, even when it is rejected after some of its outputs went in."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augment.run import expand
from augment.stages import worker as worker_module
from augment.stages.executor import in_process
from augment.stages.manifest import read_manifest
from augment.writers import shards as shards_module
from augment.writers.shards import RECORDS_DIR, SHARDS_DIR
from tests.helpers import DIGITS, small_run


def test_a_source_rejected_midway_leaves_its_shard_whole_without_it(
    tmp_path: Path, small_recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = "3/digit3_01.png"
    real_augment, real_render = worker_module.Worker.augment, worker_module.Worker.render
    draws: list[int] = []

    def render(self: Any, task: Any) -> Any:
        self.source = task.original.path
        yield from real_render(self, task)

    def augment(self: Any, prepared: np.ndarray, label: str, seed: int) -> Any:
        # The victim's third variant fails, after the original and two variants went in.
        if self.source == victim:
            draws.append(seed)
            if len(draws) == 3:
                raise worker_module.SourceProblem("the recipe cannot be applied: a test draw")
        return real_augment(self, prepared, label, seed)

    begun_again = []
    real_discard = shards_module.ShardFile.discard

    def discard(self: Any) -> None:
        begun_again.append(self)
        real_discard(self)

    monkeypatch.setattr(worker_module.Worker, "render", render)
    monkeypatch.setattr(worker_module.Worker, "augment", augment)
    monkeypatch.setattr(shards_module.ShardFile, "discard", discard)
    out = tmp_path / "out"
    options = small_run(small_recipe, times=5, val=0, test=0, layout="webdataset")
    summary = expand(DIGITS, out, options, executor=in_process)
    assert [r.path for r in summary.rejected] == [victim]
    assert len(draws) == 3 and len(begun_again) == 1  # its shard was begun again without it
    manifest = read_manifest(out)
    assert not [r for r in manifest if r["sources"][0]["path"] == victim]
    assert len(manifest) == 5 * 59
    for records in (out / RECORDS_DIR).glob("*.jsonl"):
        listed = [json.loads(line) for line in records.read_text().splitlines()]
        samples = [r for r in listed if "commit" not in r]
        with tarfile.open(out / SHARDS_DIR / listed[-1]["commit"]["shard"]) as tar:
            names = [m.name for m in tar.getmembers() if m.name.endswith(".json")]
        assert names == [f"{r['key']}.json" for r in samples]  # the shard holds its records
    # A rerun keeps every shard, its rejection too (a verdict the same inputs give again).
    monkeypatch.undo()
    shutil.rmtree(out / ".augment")  # no rerun state: the full run, shard by shard
    again = expand(DIGITS, out, options, executor=in_process)
    assert (
        not again.fast_path and again.written == 0 and [r.path for r in again.rejected] == [victim]
    )
