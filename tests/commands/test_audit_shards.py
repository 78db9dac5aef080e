"""`augment audit` of a sharded output (`--output-format webdataset|parquet`): clean outputs
of both sample sets audit clean, as their folder outputs do; each problem planted in the shards
(a sample added, bytes changed, a record gone from the manifest, a held-out image copied into a
train shard, a truncated or corrupt shard, a missing commit marker) is found and named, never a
traceback. Shards are changed with `tarfile` and pyarrow, as a user's tool would change them."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augment.cli import main
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import DETECTION, TEXTURES, augment_command, scenes, small_run, write_masks

Member = tuple[str, bytes]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory, small_recipe: Path) -> dict[str, Path]:
    """sample_data/textures expanded 2x into shards of 10, in each format (read-only)."""
    pytest.importorskip("pyarrow")
    made = {}
    for layout in ("webdataset", "parquet"):
        out = tmp_path_factory.mktemp(layout) / "out"
        expand(TEXTURES, out, small_run(small_recipe, times=2, layout=layout, shard_size=10))
        made[layout] = out
    return made


@pytest.fixture(params=["webdataset", "parquet"])
def out(request: pytest.FixtureRequest, outputs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of a sharded output, to plant problems in."""
    return Path(shutil.copytree(outputs[request.param], tmp_path / "out"))


@pytest.fixture()
def tar_out(outputs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(outputs["webdataset"], tmp_path / "out"))


def audit(out: Path, *options: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["audit", str(out), "--json", "-j", "2", *options])
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception)
    return result.exit_code, json.loads(result.output)


def kinds(report: dict) -> set[tuple[str, str]]:
    return {(c["name"], f["kind"]) for c in report["checks"] for f in c["findings"]}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def shard_of(out: Path, split: str) -> Path:
    """The first shard of `split` that holds samples."""
    return out / "shards" / next(r["shard"] for r in manifest(out) if r["split"] == split)


def rewrite_tar(path: Path, change: Callable[[list[Member]], list[Member]]) -> None:
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in change(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def rewrite_parquet(path: Path, change: Callable[[list[dict]], list[dict]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = change(table.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def rewrite(path: Path, tar: Callable[[list[Member]], list[Member]], rows: Callable) -> None:
    if path.suffix == ".tar":
        rewrite_tar(path, tar)
    else:
        rewrite_parquet(path, rows)


def read_samples(path: Path) -> list[tuple[bytes, dict]]:
    """A shard's (image, record) pairs, as a consumer reads them."""
    if path.suffix == ".tar":
        with tarfile.open(path) as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
        keys = sorted({n.split(".", 1)[0] for n in files})
        return [(files[f"{k}.jpg"], json.loads(files[f"{k}.json"])) for k in keys]
    import pyarrow.parquet as pq

    return [(row["image"]["bytes"], row) for row in pq.read_table(path).to_pylist()]


# --------------------------------------------------------------------------- clean


def test_a_clean_sharded_output_audits_clean(out: Path) -> None:
    code, report = audit(out)
    assert code == 0 and report["clean"] and report["mode"] == "shards", report
    assert report["sizes"] == {"train": 80, "validation": 5, "test": 5}
    assert {c["name"] for c in report["checks"]} == {
        "lineage", "exact-duplicates", "near-duplicates", "integrity", "balance"
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["webdataset", "parquet"])
def test_a_sharded_detection_output_audits_as_its_folder_output(
    tmp_path: Path, layout: str
) -> None:
    """Same findings as the folder output of the same run: the sample set's only one is a
    class without objects in validation (balance), and the annotations check passes."""
    pytest.importorskip("pyarrow")
    options = ExpandOptions(times=2, recipe="detection", workers=1)
    expand(DETECTION, tmp_path / "folders", options)
    expand(DETECTION, tmp_path / "shards", dataclasses.replace(options, layout=layout))
    _, folders = audit(tmp_path / "folders")
    code, shards = audit(tmp_path / "shards")
    assert kinds(shards) == kinds(folders) == {("balance", "missing-class")}
    assert "annotations" in {c["name"] for c in shards["checks"]} and code == 1


# --------------------------------------------------------------------------- planted


def test_a_sample_added_to_a_tar_is_found(tar_out: Path) -> None:
    shard = shard_of(tar_out, "train")
    image, record = read_samples(shard)[0]
    extra = {**record, "key": "00000999", "path": "train/brick/extra.jpg"}
    rewrite_tar(
        shard,
        lambda m: [*m, ("00000999.jpg", image), ("00000999.json", json.dumps(extra).encode())],
    )
    code, report = audit(tar_out)
    assert code == 1
    assert {("integrity", "unlisted"), ("integrity", "shard-changed")} <= kinds(report)


def test_a_sample_s_changed_bytes_are_found(out: Path) -> None:
    shard = shard_of(out, "train")

    def tar(members: list[Member]) -> list[Member]:
        name, data = members[0]
        return [(name, data[:-10] + b"\0" * 10), *members[1:]]

    def rows(values: list[dict]) -> list[dict]:
        image = values[0]["image"]
        values[0]["image"] = {**image, "bytes": image["bytes"][:-10] + b"\0" * 10}
        return values

    rewrite(shard, tar, rows)
    code, report = audit(out)
    assert code == 1 and ("integrity", "sha256-mismatch") in kinds(report)
    assert ("integrity", "shard-changed") in kinds(report)


def test_a_record_deleted_from_the_manifest_is_found(out: Path) -> None:
    records = manifest(out)
    gone = next(r for r in records if r["split"] == "train")
    lines = [json.dumps(r) for r in records if r is not gone]
    (out / "manifest.jsonl").write_text("".join(line + "\n" for line in lines))
    code, report = audit(out)
    assert code == 1
    unlisted = [
        f for c in report["checks"] for f in c["findings"] if f["kind"] == "unlisted"
    ]  # the sample a consumer of the shard still trains on
    assert unlisted and gone["path"] in unlisted[0]["message"]
    assert ("integrity", "records-differ") in kinds(report)


def _add_to_train_shard(out: Path, image: bytes, record: dict) -> None:
    """A sample of `image` with `record` (its key 00000999) appended to the train shard, in
    whichever format the shards are (a tar's members, a Parquet file's rows)."""

    def tar(members: list[Member]) -> list[Member]:
        return [*members, ("00000999.jpg", image), ("00000999.json", json.dumps(record).encode())]

    def rows(values: list[dict]) -> list[dict]:
        return [
            *values,
            {**values[0], "image": {"bytes": image, "path": "x.jpg"}, "key": "00000999"},
        ]

    rewrite(shard_of(out, "train"), tar, rows)


def test_a_held_out_image_copied_into_a_train_shard_is_a_leak(out: Path) -> None:
    image, record = read_samples(shard_of(out, "validation"))[0]
    _add_to_train_shard(out, image, {**record, "split": "train", "key": "00000999"})
    code, report = audit(out)
    assert code == 1
    assert {("exact-duplicates", "identical"), ("integrity", "unlisted")} <= kinds(report)
    leak = next(c for c in report["checks"] if c["name"] == "exact-duplicates")["findings"][0]
    assert record["path"] in leak["paths"]


def test_a_crop_in_a_train_shard_and_the_audit_without_the_crop_search(out: Path) -> None:
    """A 90 % crop of a held-out sample added to a train shard: a crop finding by default;
    with --no-crop-search none, the near-duplicates check saying it skipped the search."""
    image, _ = read_samples(shard_of(out, "validation"))[0]
    with Image.open(io.BytesIO(image)) as img:
        w, h = img.size
        buffer = io.BytesIO()
        img.crop((w // 20, h // 20, w // 20 + w * 9 // 10, h // 20 + h * 9 // 10)).save(
            buffer, "JPEG", quality=95
        )
    crop = buffer.getvalue()
    _add_to_train_shard(
        out, crop, {**read_samples(shard_of(out, "train"))[0][1], "key": "00000999"}
    )
    code, searched = audit(out)
    assert code == 1 and ("near-duplicates", "cropped") in kinds(searched)
    code, skipped = audit(out, "--no-crop-search")
    assert code == 1 and ("integrity", "unlisted") in kinds(skipped)  # still a train sample
    assert ("near-duplicates", "cropped") not in kinds(skipped)
    near = next(c for c in skipped["checks"] if c["name"] == "near-duplicates")
    assert near["skipped"] == ["crop-search"] and skipped["settings"]["crop_search"] is False


@pytest.mark.slow
def test_a_truncated_shard_is_a_finding_not_a_traceback(out: Path) -> None:
    shard = shard_of(out, "train")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    result = subprocess.run(
        augment_command("audit", str(out)), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "[damaged-shard]" in result.stdout and "[shard-changed]" in result.stdout


@pytest.mark.slow
def test_a_corrupt_parquet_shard_is_a_finding(outputs: dict[str, Path], tmp_path: Path) -> None:
    out = Path(shutil.copytree(outputs["parquet"], tmp_path / "out"))
    shard = shard_of(out, "train")
    data = bytearray(shard.read_bytes())
    data[-12:-4] = b"\xff" * 8  # the footer's length and magic
    shard.write_bytes(bytes(data))
    code, report = audit(out)
    assert code == 1 and ("integrity", "damaged-shard") in kinds(report)


@pytest.mark.slow
def test_a_missing_commit_marker_is_found(out: Path) -> None:
    shard = shard_of(out, "train")
    records = out / "records" / f"{shard.stem}.jsonl"
    lines = records.read_text().splitlines(keepends=True)
    assert '"commit"' in lines[-1]
    records.write_text("".join(lines[:-1]))
    code, report = audit(out)
    assert code == 1 and kinds(report) == {("integrity", "uncommitted")}


@pytest.mark.slow
def test_a_missing_shard_and_an_unlisted_one_are_found(tar_out: Path) -> None:
    shard = shard_of(tar_out, "train")
    shard.rename(shard.with_name("train-00099.tar"))
    code, report = audit(tar_out)
    assert code == 1
    assert {("integrity", "missing-shard"), ("integrity", "unlisted-shard")} <= kinds(report)


@pytest.mark.slow
def test_a_held_out_source_in_a_train_record_is_a_lineage_finding(tar_out: Path) -> None:
    records = manifest(tar_out)
    held_out = next(r for r in records if r["split"] == "validation")["sources"][0]
    train = next(r for r in records if r["split"] == "train")
    train["sources"] = [held_out]
    (tar_out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, report = audit(tar_out)
    assert code == 1 and ("lineage", "held-out-source") in kinds(report)
    assert ("integrity", "record-differs") in kinds(report)  # the shard's record says otherwise


def test_parquet_shards_need_pyarrow_named_as_the_extra(
    outputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not there
    result = CliRunner().invoke(main, ["audit", str(outputs["parquet"])])
    assert result.exit_code == 2 and "augment[parquet]" in result.output


# --------------------------------------------------------------------------- annotated


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detection") / "out"
    expand(
        DETECTION, out, ExpandOptions(times=2, recipe="detection", workers=1, layout="webdataset")
    )
    return out


@pytest.mark.slow
def test_a_sample_s_box_outside_its_image_is_found(detection: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(detection, tmp_path / "out"))
    record = next(r for r in manifest(out) if r["annotation"]["objects"])
    width, _ = record["annotation"]["size"]

    def tar(members: list[Member]) -> list[Member]:
        changed = []
        for name, data in members:
            if name == f"{record['key']}.json":
                meta = json.loads(data)
                meta["annotation"]["objects"][0]["box"][2] = width + 40
                data = json.dumps(meta).encode()
            changed.append((name, data))
        return changed

    rewrite_tar(out / "shards" / record["shard"], tar)
    code, report = audit(out)
    assert code == 1
    found = kinds(report)
    assert {("annotations", "bad-object"), ("annotations", "annotation-differs")} <= found
    bad = next(c for c in report["checks"] if c["name"] == "annotations")["findings"]
    assert any("outside" in f["message"] and record["path"] in f["paths"] for f in bad)


@pytest.mark.slow
def test_a_segmentation_sample_s_mask_is_checked(tmp_path: Path) -> None:
    """A clean mask set's shards audit as its folders do; a sample without its mask is found."""
    src = write_masks(tmp_path / "src", scenes(6))
    options = ExpandOptions(times=2, recipe="detection", workers=1, val=1, test=0)
    expand(src, tmp_path / "folders", options)
    expand(src, tmp_path / "out", dataclasses.replace(options, layout="webdataset"))
    _, folders = audit(tmp_path / "folders")
    _, clean = audit(tmp_path / "out")
    assert kinds(clean) == kinds(folders)
    record = manifest(tmp_path / "out")[0]
    gone = f"{record['key']}.mask.png"
    rewrite_tar(
        tmp_path / "out" / "shards" / record["shard"], lambda m: [x for x in m if x[0] != gone]
    )
    code, report = audit(tmp_path / "out")
    assert code == 1 and ("annotations", "missing-mask") in kinds(report)


@pytest.mark.slow
def test_held_out_objects_are_compared_with_the_source(detection: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(detection, tmp_path / "out"))
    result = CliRunner().invoke(main, ["audit", str(out), "--source", str(DETECTION), "--json"])
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["annotations"]["passed"], checks["annotations"]
    records = manifest(out)
    held_out = next(r for r in records if r["split"] != "train" and r["annotation"]["objects"])
    held_out["annotation"]["objects"][0]["box"][0] += 5
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(main, ["audit", str(out), "--source", str(DETECTION), "--json"])
    found = kinds(json.loads(result.output))
    assert {("annotations", "held-out-objects"), ("annotations", "annotation-differs")} <= found


@pytest.mark.slow
def test_a_shard_named_for_no_split_is_an_unlisted_shard(tar_out: Path) -> None:
    shutil.copy(shard_of(tar_out, "validation"), tar_out / "shards" / "holdout-00000.tar")
    code, report = audit(tar_out)
    assert code == 1 and kinds(report) == {("integrity", "unlisted-shard")}
