"""Sharded outputs written by the workers: WebDataset tar shards read back by the `webdataset`
library, Parquet by pyarrow and Hugging Face `datasets`; each image once in OUT (no loose
files), byte-identical to the folder output's; stable shards (a changed source rewrites only
its shard); a shard without its commit marker rebuilt; any worker count gives the same bytes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.model import ExpandOptions
from augment.run import expand
from augment.stages.manifest import read_header, read_manifest
from augment.writers.shards import RECORDS_DIR, SHARDS_DIR, records_name, shard_number
from tests.helpers import (
    DETECTION,
    DIGITS,
    as_from_a_terminal,
    augment_command,
    file_tree,
    scenes,
    small_run,
    write_masks,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, small_recipe: Path) -> Path:
    """The same run written as folders: what every shard's samples must equal."""
    out = tmp_path_factory.mktemp("folders") / "out"
    expand(DIGITS, out, small_run(small_recipe))
    return out


def sharded(src: Path, out: Path, recipe: Path, layout: str = "webdataset", **more: object):
    return expand(src, out, small_run(recipe, layout=layout, shard_size=25, **more))


def shard_files(out: Path) -> list[Path]:
    return sorted((out / SHARDS_DIR).iterdir())


def stamps(out: Path) -> dict[str, int]:
    files = [*(out / SHARDS_DIR).iterdir(), *(out / RECORDS_DIR).iterdir()]
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in files}


def test_webdataset_shards_read_back_with_the_webdataset_library(
    tmp_path: Path, small_recipe: Path, folders: Path
) -> None:
    wds = pytest.importorskip("webdataset")
    sharded(DIGITS, tmp_path / "out", small_recipe)
    out = tmp_path / "out"
    records = {r["path"]: r for r in read_manifest(out)}
    assert records.keys() == {r["path"] for r in read_manifest(folders)}
    seen = {}
    for shard in shard_files(out):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["json"])
            assert sample["png"] == (folders / meta["path"]).read_bytes()  # the folder's bytes
            assert meta == records[meta["path"]]  # label, split, lineage: the manifest's
            assert meta["shard"] == shard.name and sample["__key__"] == meta["key"]
            seen[meta["path"]] = meta
    assert seen.keys() == records.keys()  # every sample, once
    # OUT holds each image once: in its shard, never as a file.
    assert not [p for p in out.rglob("*.png")]
    assert {p.parent.name for p in shard_files(out)} == {SHARDS_DIR}


def test_hugging_face_loads_the_parquet_shards_folder_as_it_is(
    tmp_path: Path, small_recipe: Path
) -> None:
    """`load_dataset(OUT/shards)` infers the format from the files it finds: only shards are
    there (their records are in OUT/records/), so it reads images, one split per split."""
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe, "parquet")
    loaded = datasets.load_dataset(str(out / SHARDS_DIR), cache_dir=str(tmp_path / "hf"))
    assert {split: len(rows) for split, rows in loaded.items()} == {
        "train": 120,
        "validation": 10,
        "test": 10,
    }
    assert isinstance(loaded["train"][0]["image"], Image.Image)


def test_parquet_shards_read_back_with_pyarrow_and_datasets(
    tmp_path: Path, small_recipe: Path, folders: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe, "parquet")
    records = {r["path"]: r for r in read_manifest(out)}
    shards = shard_files(out)
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    assert sorted(r["path"] for r in rows) == sorted(records)
    for row in rows:
        assert row["image"]["bytes"] == (folders / row["path"]).read_bytes()
        assert row["label"] == records[row["path"]]["label"]
        assert row["shard"] == records[row["path"]]["shard"]
        assert json.loads(row["sources"]) == records[row["path"]]["sources"]
    train = sorted(str(s) for s in shards if s.name.startswith("train-"))
    loaded = datasets.load_dataset(
        "parquet", data_files={"train": train}, split="train", cache_dir=str(tmp_path / "hf")
    )
    first = loaded[0]
    assert isinstance(first["image"], Image.Image)
    with Image.open(folders / first["path"]) as on_disk:
        assert first["image"].size == on_disk.size
    assert len(loaded) == sum(1 for r in records.values() if r["split"] == "train")


def test_a_sample_s_shard_follows_from_its_source_path(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe)
    counts = read_header(out)["shards"]["counts"]
    assert counts == {"train": 5, "validation": 1, "test": 1}  # 120 train outputs / 25
    for record in read_manifest(out):
        number = shard_number(record["sources"][0]["path"], counts[record["split"]])
        assert record["shard"] == f"{record['split']}-{number:05d}.tar"


@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_one_worker_and_two_write_the_same_bytes(
    tmp_path: Path, small_recipe: Path, layout: str
) -> None:
    pytest.importorskip("pyarrow")
    sharded(DIGITS, tmp_path / "one", small_recipe, layout, workers=1)
    sharded(DIGITS, tmp_path / "two", small_recipe, layout, workers=2)
    assert file_tree(tmp_path / "one") == file_tree(tmp_path / "two")


def test_a_changed_source_rewrites_only_its_shard(
    tmp_path: Path, small_recipe: Path, digits_copy: Path
) -> None:
    out = tmp_path / "out"
    sharded(digits_copy, out, small_recipe)
    before = stamps(out)
    changed = next(r["sources"][0]["path"] for r in read_manifest(out) if r["split"] == "train")
    with Image.open(digits_copy / changed) as image:
        image.rotate(90).save(digits_copy / changed)
    summary = sharded(digits_copy, out, small_recipe)
    after = stamps(out)
    its_shard = next(r["shard"] for r in read_manifest(out) if r["sources"][0]["path"] == changed)
    rewritten = {name for name in after if after[name] != before.get(name)}
    assert rewritten == {f"{SHARDS_DIR}/{its_shard}", records_name(its_shard)}
    assert summary.written == sum(1 for r in read_manifest(out) if r["shard"] == its_shard)
    clean = tmp_path / "clean"
    sharded(digits_copy, clean, small_recipe)
    assert file_tree(out) == file_tree(clean)


def test_a_rerun_that_changes_nothing_writes_nothing(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert sharded(DIGITS, out, small_recipe).fast_path
    # Without the rerun state (another machine): a full run, which keeps every shard.
    shutil.rmtree(out / ".augment")
    summary = sharded(DIGITS, out, small_recipe)
    assert not summary.fast_path and summary.written == 0
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if ".augment" not in p.parts} == {
        p: t for p, t in before.items() if ".augment" not in p.parts
    }


def test_a_shard_without_its_commit_marker_is_rebuilt(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe)
    clean = file_tree(out)
    victim = shard_files(out)[2]
    (out / records_name(victim.name)).unlink()
    victim.write_bytes(victim.read_bytes()[:1000])  # as a run killed mid-write would not
    summary = sharded(DIGITS, out, small_recipe)
    assert 0 < summary.written < summary.total
    assert file_tree(out) == clean


@pytest.mark.slow  # a shard without its marker rebuilt: the fast lane's test of resume
def test_sigkill_mid_run_then_rerun_equals_a_clean_run(tmp_path: Path, small_recipe: Path) -> None:
    out = tmp_path / "out"
    args = ["expand", str(DIGITS), str(out), "-n", "3", "--recipe", str(small_recipe)]
    args += ["--output-format", "webdataset", "--shard-size", "10", "-j", "2", "-q"]
    proc = subprocess.Popen(augment_command(*args), start_new_session=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and list(out.glob(f"{RECORDS_DIR}/*.jsonl")):
            break  # one shard committed, others on their way
        time.sleep(0.002)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kept = {p.name for p in out.glob(f"{RECORDS_DIR}/*.jsonl")}
    assert kept and len(kept) < 14
    assert CliRunner().invoke(main, args).exit_code == 0
    clean = tmp_path / "clean"
    assert CliRunner().invoke(main, [*args[:2], str(clean), *args[3:]]).exit_code == 0
    assert file_tree(out) == file_tree(clean)
    assert not [p for p in out.rglob("*") if ".augment-tmp-" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_ctrl_c_mid_run_is_a_clean_interrupt_and_the_rerun_resumes(
    tmp_path: Path, small_recipe: Path, layout: str
) -> None:
    """Exit 130 and the tool's message only (an unfinished Parquet writer once printed its
    own error from the garbage collector); the committed shards are kept."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "out"
    args = ["expand", str(DIGITS), str(out), "-n", "30", "--recipe", str(small_recipe)]
    args += ["--output-format", layout, "--shard-size", "50", "-j", "2", "-q"]
    proc = subprocess.Popen(
        augment_command(*args),
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and list(out.glob(f"{RECORDS_DIR}/*.jsonl")):
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted: finished work is kept; rerun the same command to resume"
    kept = {p.name: p.read_bytes() for p in out.glob(f"{RECORDS_DIR}/*.jsonl")}
    resumed = CliRunner().invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    clean = tmp_path / "clean"
    made = CliRunner().invoke(main, [*args[:2], str(clean), *args[3:]])
    assert made.exit_code == 0, made.output
    assert file_tree(out) == file_tree(clean)
    assert all(file_tree(out)[f"{RECORDS_DIR}/{name}"] == data for name, data in kept.items())


def test_a_damaged_header_is_taken_as_absent_and_the_shards_are_kept(
    tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    sharded(DIGITS, out, small_recipe)
    clean = file_tree(out)
    (out / "augment.json").write_text('{"format": "augment-run/')
    summary = sharded(DIGITS, out, small_recipe)
    assert summary.written == 0 and any("augment.json" in w for w in summary.warnings)
    assert file_tree(out) == clean


def test_switching_between_folders_and_shards_is_refused(
    tmp_path: Path, small_recipe: Path
) -> None:
    out = tmp_path / "out"
    expand(DIGITS, out, small_run(small_recipe))
    args = ["expand", str(DIGITS), str(out), "-n", "3", "--recipe", str(small_recipe), "-j", "1"]
    result = CliRunner().invoke(main, [*args, "--output-format", "parquet"])
    assert result.exit_code == 2
    assert "written with --output-format folders" in result.output
    assert "Traceback" not in result.output


def test_expand_with_output_format_webdataset(tmp_path: Path, small_recipe: Path) -> None:
    pytest.importorskip("webdataset")
    args = ["expand", str(DIGITS), str(tmp_path / "out"), "-n", "2", "--recipe", str(small_recipe)]
    args += ["--output-format", "webdataset", "--shard-size", "25", "-j", "1", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "out")
    assert len(manifest) == 100 and all(r["shard"].endswith(".tar") for r in manifest)
    header = read_header(tmp_path / "out")
    assert header["options"]["output_format"] == "webdataset"
    assert header["shards"]["shard_size"] == 25


@pytest.mark.slow
def test_the_audit_of_a_sharded_output_finds_what_the_folder_output_s_finds(
    tmp_path: Path, small_recipe: Path, folders: Path
) -> None:
    """The same run as shards and as folders: the same findings (the tiny digits at 64x48
    have near duplicates across splits, docs/audit.md). The audit's checks of shards are
    tested in tests/commands/test_audit_shards.py."""
    sharded(DIGITS, tmp_path / "out", small_recipe)
    reports = []
    for target in (folders, tmp_path / "out"):
        result = CliRunner().invoke(main, ["audit", str(target), "--json"])
        assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
        reports.append(json.loads(result.output))
    assert reports[1]["mode"] == "shards"
    assert [c["findings"] for c in reports[1]["checks"]] == [
        c["findings"] for c in reports[0]["checks"]
    ]


def test_force_never_writes_into_a_shards_folder_it_did_not_make(
    tmp_path: Path, small_recipe: Path
) -> None:
    mine = tmp_path / "out" / SHARDS_DIR / "train-00000.tar"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a user's own file")
    args = ["expand", str(DIGITS), str(tmp_path / "out"), "--recipe", str(small_recipe)]
    result = CliRunner().invoke(main, [*args, "--output-format", "webdataset", "--force"])
    assert result.exit_code == 2 and "--force never overwrites" in result.output
    assert mine.read_bytes() == b"a user's own file"


def test_options_default_to_folders() -> None:
    assert ExpandOptions().layout == "folders"
    assert "output_format" not in ExpandOptions().to_dict()


@pytest.fixture(scope="module")
def detection_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detection") / "out"
    expand(DETECTION, out, ExpandOptions(times=3, recipe="detection", workers=1))
    return out


def yolo_boxes(text: str) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in text.splitlines()]


def test_annotated_webdataset_samples_carry_the_folder_output_s_boxes(
    tmp_path: Path, detection_folders: Path
) -> None:
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "out"
    expand(DETECTION, out, ExpandOptions(times=3, recipe="detection", layout="webdataset"))
    folder = {r["path"]: r for r in read_manifest(detection_folders)}
    names = read_header(out)["annotations"]["names"]
    seen = 0
    for shard in shard_files(out):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["json"])
            assert sample["jpg"] == (detection_folders / meta["path"]).read_bytes()
            annotation = meta["annotation"]
            assert annotation == folder[meta["path"]]["annotation"]
            # The boxes are the folder output's YOLO label file, in pixels.
            width, height = annotation["size"]
            boxes = [
                [names.index(o["label"]), (x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                 (x1 - x0) / width, (y1 - y0) / height]
                for o in annotation["objects"]
                for x0, y0, x1, y1 in [o["box"]]
            ]  # fmt: skip
            label_file = (detection_folders / annotation["file"]).read_text()
            on_disk = yolo_boxes(label_file)
            assert len(boxes) == len(on_disk)
            for box, line in zip(boxes, on_disk, strict=True):
                assert box == pytest.approx(line, abs=1e-6)
            seen += 1
    assert seen == len(folder) and any(r["annotation"]["objects"] for r in folder.values())
    assert not list(out.rglob("*.jpg")) and not (out / "labels").exists()
    assert read_header(out)["annotations"] == read_header(detection_folders)["annotations"]


def test_annotated_parquet_rows_carry_the_boxes_as_a_column(
    tmp_path: Path, detection_folders: Path
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    expand(DETECTION, out, ExpandOptions(times=3, recipe="detection", layout="parquet"))
    folder = {r["path"]: r for r in read_manifest(detection_folders)}
    rows = [row for shard in shard_files(out) for row in pq.read_table(shard).to_pylist()]
    assert sorted(row["path"] for row in rows) == sorted(folder)
    for row in rows:
        assert json.loads(row["annotation"]) == folder[row["path"]]["annotation"]
        assert row["mask"] is None
    train = [str(s) for s in shard_files(out) if s.name.startswith("train-")]
    loaded = datasets.load_dataset(
        "parquet", data_files={"train": train}, split="train", cache_dir=str(tmp_path / "hf")
    )
    first = loaded[0]
    assert json.loads(first["annotation"]) == folder[first["path"]]["annotation"]


def test_a_segmentation_sample_carries_its_mask(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    src = write_masks(tmp_path / "src", scenes(6))
    options = ExpandOptions(times=2, recipe="detection", workers=1, val=1, test=0)
    expand(src, tmp_path / "folders", options)
    expand(src, tmp_path / "out", dataclasses.replace(options, layout="webdataset"))
    masks = 0
    for shard in shard_files(tmp_path / "out"):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            meta = json.loads(sample["json"])
            expected = (tmp_path / "folders" / meta["annotation"]["file"]).read_bytes()
            assert sample["mask.png"] == expected
            masks += 1
    assert masks == len(read_manifest(tmp_path / "folders"))


def test_the_format_registry_names_each_writers_extension() -> None:
    # The registry holds the extensions itself, so that a folders run imports no writer.
    from augment.writers import parquet, webdataset
    from augment.writers.shards import WRITERS

    assert WRITERS == {"webdataset": webdataset.EXTENSION, "parquet": parquet.EXTENSION}
