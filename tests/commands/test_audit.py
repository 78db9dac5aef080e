"""`augment audit`: crafted leaks are each found and named; clean outputs of `expand` on the
sample data pass with no false positive; what cannot be audited exits 2."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance, ImageOps

from augment.cli import main
from augment.commands import audit_duplicates
from augment.commands.audit import audit_output, audit_splits
from augment.commands.audit_report import AuditOptions
from augment.errors import DatasetError, ManifestError
from augment.imaging.crops import CropFit, crop_fit
from augment.model import ExpandOptions, ExpandSummary
from augment.run import expand
from tests.helpers import DIGITS, TEXTURES


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def write_records(out: Path, recs: list[dict]) -> None:
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def kinds(out: Path) -> set[tuple[str, str]]:
    return {(f.check, f.kind) for f in audit_output(out).findings}


@pytest.fixture()
def out(tmp_path: Path, expanded: tuple[Path, ExpandSummary]) -> Path:
    """A private copy of the shared expanded textures output, to plant leaks in."""
    copy = tmp_path / "out"
    shutil.copytree(expanded[0], copy)
    return copy


def held_out_file(out: Path, split: str = "validation", label: str = "brick") -> Path:
    rec = next(r for r in records(out) if r["split"] == split and r["label"] == label)
    return out / rec["path"]


@pytest.fixture(scope="module")
def default_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Both sample sets expanded with the default recipe (the user's first command)."""
    outs = []
    for src in (TEXTURES, DIGITS):
        target = tmp_path_factory.mktemp("default") / src.name
        expand(src, target, ExpandOptions(times=5, workers=2))
        outs.append(target)
    return outs


@pytest.mark.slow
def test_clean_expand_outputs_pass_with_no_false_positive(default_outputs: list[Path]) -> None:
    for target in default_outputs:
        result = CliRunner().invoke(main, ["audit", str(target)])
        assert result.exit_code == 0, result.output
        assert "clean: no findings" in result.output
        for check in ("lineage", "exact-duplicates", "near-duplicates", "integrity", "balance"):
            assert f"ok   {check}" in result.output


@pytest.mark.slow
def test_json_report_names_every_check(default_outputs: list[Path]) -> None:
    result = CliRunner().invoke(main, ["audit", str(default_outputs[1]), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["clean"] is True
    assert [c["name"] for c in report["checks"]] == [
        "lineage",
        "exact-duplicates",
        "near-duplicates",
        "integrity",
        "balance",
    ]
    assert report["counts"]["train"]["3"] == 20  # 4 train originals x 5
    assert set(report["counts"]) == {"train", "validation", "test"}


def test_validation_original_copied_into_train_under_a_new_name(out: Path) -> None:
    source = held_out_file(out)
    shutil.copy(source, out / "train" / "grass" / "grass_99.jpg")
    found = audit_output(out).findings
    exact = [f for f in found if f.check == "exact-duplicates"]
    assert [(f.kind, f.paths) for f in exact] == [
        ("identical", ("train/grass/grass_99.jpg", source.relative_to(out).as_posix()))
    ]
    assert "filed as class 'grass' and 'brick'" in exact[0].message  # label noise named too
    assert ("integrity", "unlisted") in {(f.check, f.kind) for f in found}


def test_reencoded_at_another_quality_is_the_same_image(out: Path) -> None:
    source = held_out_file(out)
    Image.open(source).save(out / "train" / "brick" / "again.jpg", quality=60)
    found = [f for f in audit_output(out).findings if f.check == "exact-duplicates"]
    assert [f.kind for f in found] == ["re-encoded"]
    assert "train/brick/again.jpg" in found[0].paths and "PSNR" in found[0].message


@pytest.mark.slow
def test_resized_copy_is_a_near_duplicate(out: Path) -> None:
    source = held_out_file(out, "test", "histology")
    with Image.open(source) as img:
        img.resize((img.width * 2, img.height * 2), Image.Resampling.BICUBIC).save(
            out / "train" / "histology" / "bigger.png"
        )
    found = [f for f in audit_output(out).findings if f.check == "near-duplicates"]
    assert [(f.kind, f.paths[0]) for f in found] == [("resized", "train/histology/bigger.png")]
    assert "128x96" in found[0].message  # the sizes are named


def test_mirrored_copy_is_found(out: Path) -> None:
    source = held_out_file(out, "validation", "deep_space")
    ImageOps.mirror(Image.open(source)).save(out / "train" / "deep_space" / "flipped.jpg")
    found = [f for f in audit_output(out).findings if f.check == "near-duplicates"]
    assert [(f.kind, f.paths[0]) for f in found] == [("mirrored", "train/deep_space/flipped.jpg")]


def test_a_resized_re_encoded_crop_of_a_held_out_image_in_train_is_found(out: Path) -> None:
    """88 % of a validation image, off-centre (no crop window starts there), scaled back to
    its size and saved as JPEG quality 70 into train: the pair is named, pixels checked."""
    source = held_out_file(out, "validation", "grass")
    with Image.open(source) as img:
        w, h = img.size
        left, top = w // 17, h // 23
        closer = img.crop((left, top, left + w * 88 // 100, top + h * 88 // 100))
        closer.resize((w, h), Image.Resampling.BILINEAR).save(
            out / "train" / "grass" / "closer.jpg", quality=70
        )
    found = [f for f in audit_output(out).findings if f.check == "near-duplicates"]
    pair = ("train/grass/closer.jpg", source.relative_to(out).as_posix())
    assert [(f.kind, f.paths) for f in found] == [("cropped", pair)]
    assert "one is a crop of the other" in found[0].message
    assert "placed, the pixels correlate" in found[0].message


def plant_crops(out: Path, count: int) -> Path:
    """`count` crops of one validation image (85-90 % of its sides, each at another place)
    saved into train: the held-out image they leak."""
    source = held_out_file(out, "validation", "grass")
    with Image.open(source) as img:
        w, h = img.size
        for n in range(count):
            share = 90 - n % 3 * 2
            left, top = w * (1 + n) // 40, h * (count - n) // 50
            piece = img.crop((left, top, left + w * share // 100, top + h * share // 100))
            piece.save(out / "train" / "grass" / f"piece_{n}.png")
    return source


def test_a_held_out_file_with_many_crops_in_train_is_pixel_checked_a_few_times(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight crops of one held-out image in train: the audit names the leak, and checks the
    pixels of that image's closest few candidates only (a set of look-alikes has hundreds of
    candidates a file, each check milliseconds)."""
    source = plant_crops(out, 8)
    with Image.open(source) as img:
        grey = np.asarray(img.convert("L"))
    checks_of_source = []

    def counted(probe: np.ndarray, image: np.ndarray, *args: Any, **kwargs: Any) -> CropFit:
        if any(
            p.shape == grey.shape and abs(p.astype(int) - grey).max() <= 1 for p in (probe, image)
        ):
            checks_of_source.append(probe is not image)
        return crop_fit(probe, image, *args, **kwargs)

    monkeypatch.setattr(audit_duplicates, "crop_fit", counted)
    name = source.relative_to(out).as_posix()
    leaked = [f for f in audit_output(out).findings if f.kind == "cropped" and name in f.paths]
    assert leaked
    assert all(p.startswith("train/grass/piece_") for f in leaked for p in f.paths if p != name)
    limit = audit_duplicates._PAIRS_PER_FILE * audit_duplicates._CHECKS_PER_PAIR
    assert 0 < len(checks_of_source) <= limit < 8


def test_crop_findings_are_the_same_with_one_worker_or_two(out: Path) -> None:
    """The pixel checks run on the audit's threads: the findings do not depend on how many."""
    plant_crops(out, 4)
    one, two = (audit_output(out, AuditOptions(workers=w)).findings for w in (1, 2))
    assert [f.message for f in one if f.kind == "cropped"]
    assert [f.message for f in one] == [f.message for f in two]


# --------------------------------------------------------------------- --no-crop-search


def closer(image: Path, target: Path) -> Path:
    """A 90 % crop of `image` (off its corner) saved as PNG at `target`."""
    with Image.open(image) as img:
        w, h = img.size
        left, top = w // 20, h // 20
        img.crop((left, top, left + w * 9 // 10, top + h * 9 // 10)).save(target)
    return target


def plant_leaks(out: Path) -> set[tuple[str, tuple[str, str]]]:
    """Into train: a 90 % crop of a validation image, a byte copy of another and a copy of a
    test image at twice its size. Each leak as the audit names it: its kind, its pair."""
    cropped = held_out_file(out, "validation", "grass")
    closer(cropped, out / "train" / "grass" / "closer.png")
    copied = held_out_file(out, "validation", "brick")
    shutil.copy(copied, out / "train" / "brick" / "again.jpg")
    resized = held_out_file(out, "test", "histology")
    with Image.open(resized) as img:
        bigger = img.resize((img.width * 2, img.height * 2), Image.Resampling.BICUBIC)
        bigger.save(out / "train" / "histology" / "bigger.png")
    return {
        ("cropped", ("train/grass/closer.png", cropped.relative_to(out).as_posix())),
        ("identical", ("train/brick/again.jpg", copied.relative_to(out).as_posix())),
        ("resized", ("train/histology/bigger.png", resized.relative_to(out).as_posix())),
    }


def leaks_in(report: dict) -> set[tuple[str, tuple[str, ...]]]:
    """The duplicate checks' findings of a `--json` report: (kind, paths)."""
    return {
        (f["kind"], tuple(f["paths"]))
        for c in report["checks"]
        if c["name"] in ("exact-duplicates", "near-duplicates")
        for f in c["findings"]
    }


def test_no_crop_search_skips_crops_and_still_finds_whole_image_copies(out: Path) -> None:
    """A 90 % crop of a held-out image in train is found by default, not with
    --no-crop-search; a byte copy and a resized copy are found either way. The JSON report
    says the near-duplicates check skipped the crop search (and no other check skipped
    anything), so its pass is not read as "no crops"."""
    planted = plant_leaks(out)
    reports = {}
    for switch in ([], ["--no-crop-search"]):
        result = CliRunner().invoke(main, ["audit", str(out), "--json", *switch])
        assert result.exit_code == 1, result.output
        reports[bool(switch)] = json.loads(result.output)
    searched, skipped = reports[False], reports[True]
    assert leaks_in(searched) == planted
    assert leaks_in(skipped) == {leak for leak in planted if leak[0] != "cropped"}
    assert searched["settings"]["crop_search"] is True
    assert skipped["settings"]["crop_search"] is False
    assert {c["name"]: c["skipped"] for c in searched["checks"] if c["skipped"]} == {}
    assert {c["name"]: c["skipped"] for c in skipped["checks"] if c["skipped"]} == {
        "near-duplicates": ["crop-search"]
    }


def test_the_text_report_says_the_crop_search_was_skipped(out: Path) -> None:
    """A clean audit without the crop search says so on its near-duplicates line and on its
    last line; the default report does not."""
    result = CliRunner().invoke(main, ["audit", str(out), "--no-crop-search"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = "crops and shifted copies not searched (--no-crop-search)"
    near = next(line for line in lines if line.startswith("  ok   near-duplicates"))
    assert near.endswith(f"(perceptual hash); {said}")
    assert lines[-1] == f"clean: no findings; {said}"
    default = CliRunner().invoke(main, ["audit", str(out)])
    assert default.exit_code == 0 and "not searched" not in default.output
    assert default.output.splitlines()[-1] == "clean: no findings"


def test_without_the_crop_search_no_window_is_hashed_and_no_pixels_checked(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the switch saves: no crop-window hash, no trimmed hash, no candidate search, no
    pixel check (counted on the audit's own functions, which still do the work)."""
    plant_crops(out, 2)
    calls: Counter[str] = Counter()

    def counting(name: str) -> Any:
        real = getattr(audit_duplicates, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(*args, **kwargs)

        return counted

    for name in ("crop_window_hashes", "core_hash", "_crop_hits", "crop_fit"):
        monkeypatch.setattr(audit_duplicates, name, counting(name))
    found = audit_output(out, AuditOptions(crop_search=False)).findings
    assert [f for f in found if f.kind in {"cropped", "shifted"}] == []
    assert calls == Counter()
    assert [f for f in audit_output(out).findings if f.kind == "cropped"]
    assert set(calls) == {"crop_window_hashes", "core_hash", "_crop_hits", "crop_fit"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [4, 6])
def test_look_alike_digits_are_not_reported_as_crops(tmp_path: Path, seed: int) -> None:
    """The digits sample expanded with the default recipe: on these seeds an augmented 1 in
    train came within 4 bits of a crop window of another 1 held out, and the audit called
    one a crop of the other. Placed over each other, their pixels differ by some 30 grey
    levels: the pixel check rejects the pair."""
    target = tmp_path / "out"
    expand(DIGITS, target, ExpandOptions(times=5, seed=seed, workers=1))
    found = audit_output(target).findings
    assert [f.message for f in found if f.kind in {"cropped", "shifted"}] == []


@pytest.mark.slow
def test_augmented_variants_of_held_out_originals_merged_into_train(
    out: Path, tmp_path: Path, small_recipe: Path
) -> None:
    # The classic leak: a second run (another seed) held out other originals; merging its
    # train files and records puts variants of this run's held-out originals in train.
    other = tmp_path / "other"
    options = ExpandOptions(times=4, recipe=str(small_recipe), val=0.2, test=0.1, seed=4, workers=1)
    expand(TEXTURES, other, options)
    held = {s["path"] for r in records(out) if r["split"] != "train" for s in r["sources"]}
    moved = [r for r in records(other) if r["split"] == "train" and r["sources"][0]["path"] in held]
    assert moved
    for r in moved:
        shutil.copy(other / r["path"], out / r["path"])
    write_records(out, records(out) + moved)
    report = audit_output(out)
    assert {f.paths[0] for f in report.findings_of("lineage")} == {r["path"] for r in moved}
    # Without the manifest, the pixels alone still name every leaked original (variant 0).
    by_pixels = {f.paths[0] for f in report.findings if f.check.endswith("duplicates")}
    assert {r["path"] for r in moved if r["variant"] == 0} <= by_pixels


@pytest.mark.slow
def test_near_duplicate_threshold_is_configurable(out: Path) -> None:
    source = held_out_file(out, "validation", "histology")
    with Image.open(source) as img:
        # 30% brighter: 4 bits from the original on this image, too far apart to be a re-encode.
        ImageEnhance.Brightness(img).enhance(1.3).save(out / "train" / "histology" / "bright.png")
        ImageOps.mirror(img).save(out / "train" / "histology" / "flipped.png")
    found = {}
    for bits in ("0", "6"):
        result = CliRunner().invoke(main, ["audit", str(out), "--json", "--max-distance", bits])
        report = json.loads(result.output)
        assert report["settings"]["max_distance"] == int(bits)
        checks = {c["name"]: c["findings"] for c in report["checks"]}
        assert checks["exact-duplicates"] == []
        found[bits] = {(f["kind"], f["paths"][0]) for f in checks["near-duplicates"]}
    assert found == {
        "0": {("mirrored", "train/histology/flipped.png")},
        "6": {
            ("mirrored", "train/histology/flipped.png"),
            ("similar", "train/histology/bright.png"),
        },
    }


@pytest.mark.slow
def test_manifest_listing_a_validation_original_as_a_train_source(out: Path) -> None:
    recs = records(out)
    victim = next(r for r in recs if r["split"] == "validation")["sources"][0]
    edited = next(r for r in recs if r["split"] == "train" and r["variant"] == 2)
    edited["sources"] = [dict(victim)]
    write_records(out, recs)
    found = [f for f in audit_output(out).findings if f.check == "lineage"]
    assert [(f.kind, f.paths) for f in found] == [
        ("held-out-source", (edited["path"], victim["path"]))
    ]
    assert "validation original" in found[0].message


@pytest.mark.slow
def test_mixed_train_file_with_a_held_out_second_source(out: Path) -> None:
    # A mixup output has two sources; both must be train originals.
    recs = records(out)
    held = next(r for r in recs if r["split"] == "test")["sources"][0]
    mixed = next(r for r in recs if r["split"] == "train" and r["variant"] == 1)
    mixed["sources"] = [{**mixed["sources"][0], "weight": 0.7}, {**held, "weight": 0.3}]
    write_records(out, recs)
    assert kinds(out) == {("lineage", "held-out-source")}


@pytest.mark.slow
def test_held_out_file_must_be_a_single_source_original(out: Path) -> None:
    recs = records(out)
    rec = next(r for r in recs if r["split"] == "validation")
    rec["variant"] = 3
    rec["sources"] = rec["sources"] * 2
    write_records(out, recs)
    assert {"held-out-variant", "held-out-sources"} <= {
        f.kind for f in audit_output(out).findings if f.check == "lineage"
    }


@pytest.mark.slow
def test_inconsistent_source_sha256(out: Path) -> None:
    recs = records(out)
    rec = next(r for r in recs if r["split"] == "train" and r["variant"] == 1)
    rec["sources"][0]["sha256"] = "0" * 64
    write_records(out, recs)
    assert ("lineage", "inconsistent-sha256") in kinds(out)


@pytest.mark.slow
def test_deleted_file(out: Path) -> None:
    victim = next(r for r in records(out) if r["split"] == "train")["path"]
    (out / victim).unlink()
    found = audit_output(out).findings
    assert [(f.check, f.kind, f.paths) for f in found] == [("integrity", "missing", (victim,))]


@pytest.mark.slow
def test_extra_unlisted_file(out: Path) -> None:
    # Not a duplicate of anything: only integrity must name it.
    shutil.copy(DIGITS / "7" / "digit7_01.png", out / "train" / "gravel" / "stray.png")
    shutil.copy(DIGITS / "8" / "digit8_01.png", out / "loose.png")  # outside any split folder
    found = audit_output(out).findings
    assert [(f.check, f.kind, f.paths) for f in found] == [
        ("integrity", "unlisted", ("loose.png",)),
        ("integrity", "unlisted", ("train/gravel/stray.png",)),
    ]


@pytest.mark.slow
def test_changed_bytes_and_stale_header(out: Path) -> None:
    victim = next(r for r in records(out) if r["split"] == "test")["path"]
    Image.open(out / victim).save(out / victim, quality=50)
    header = json.loads((out / "augment.json").read_text())
    header["counts"]["train"]["brick"] += 1
    (out / "augment.json").write_text(json.dumps(header))
    found = {f.kind for f in audit_output(out).findings if f.check == "integrity"}
    assert found == {"sha256-mismatch", "header-counts"}


def test_metadata_csv_must_agree(tmp_path: Path) -> None:
    """A mixing run's metadata.csv (its soft labels) must agree with the manifest."""
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("preprocess: {size: [24, 24]}\nmix:\n  - MixUp: {p: 0.5, alpha: 0.4}\n")
    out = tmp_path / "out"
    expand(TEXTURES, out, ExpandOptions(times=2, recipe=str(recipe), workers=1))
    assert kinds(out) == set()
    path = out / "validation" / "metadata.csv"
    lines = path.read_text().splitlines()
    name, _, probabilities = lines[1].split(",", 2)
    lines[1] = f"{name},grass_but_wrong,{probabilities}"
    path.write_text("\n".join(lines) + "\n")
    assert kinds(out) == {("integrity", "metadata")}


@pytest.mark.slow
def test_class_missing_from_a_held_out_split(out: Path) -> None:
    recs = records(out)
    gone = [r for r in recs if r["split"] == "test" and r["label"] == "gravel"]
    for r in gone:
        (out / r["path"]).unlink()
    write_records(out, [r for r in recs if r not in gone])
    found = audit_output(out).findings
    balance = [f for f in found if f.check == "balance"]
    assert [f.kind for f in balance] == ["missing-class"]
    assert "'gravel'" in balance[0].message and "test" in balance[0].message


@pytest.mark.slow
def test_exit_codes(out: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["audit", str(out)]).exit_code == 0
    shutil.copy(held_out_file(out), out / "train" / "brick" / "leak.jpg")
    result = runner.invoke(main, ["audit", str(out), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["clean"] is False

    (out / "manifest.jsonl").write_text('{"path": "x.jpg"}\nnot json\n')
    result = runner.invoke(main, ["audit", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (out / "manifest.jsonl").unlink()
    assert runner.invoke(main, ["audit", str(out)]).exit_code == 2
    assert runner.invoke(main, ["audit", str(tmp_path / "nowhere")]).exit_code == 2
    assert runner.invoke(main, ["audit"]).exit_code == 2  # neither OUT nor --split


def test_malformed_record_is_exit_2_not_a_finding(out: Path) -> None:
    recs = records(out)
    recs[0]["split"] = "holdout"
    write_records(out, recs)
    with pytest.raises(ManifestError, match="line 1"):
        audit_output(out)


# --------------------------------------------------------------------- without a manifest


def make_split_folders(root: Path) -> dict[str, Path]:
    """A hand-split copy of the textures set: originals 01-07 train, 08-10 validation."""
    splits = {"train": root / "train", "validation": root / "valid"}
    for image in sorted(TEXTURES.rglob("*.jpg")):
        split = "validation" if int(image.stem[-2:]) > 7 else "train"
        target = splits[split] / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    return splits


@pytest.mark.slow
def test_folder_audit_clean_and_with_leaks(tmp_path: Path) -> None:
    splits = make_split_folders(tmp_path)
    report = audit_splits(splits)
    assert report.clean, report.findings
    assert report.checks == ("exact-duplicates", "near-duplicates", "balance")
    assert report.counts["validation"]["brick"] == 3

    with Image.open(splits["validation"] / "grass" / "grass_09.jpg") as img:
        img.resize((img.width // 2, img.height // 2)).save(splits["train"] / "grass" / "r.jpg")
        img.save(splits["train"] / "grass" / "q.jpg", quality=70)
    shutil.rmtree(splits["validation"] / "histology")
    found = {
        (f.check, f.kind, f.paths[0] if f.paths else "") for f in audit_splits(splits).findings
    }
    assert found == {
        ("near-duplicates", "resized", "train:grass/r.jpg"),
        ("exact-duplicates", "re-encoded", "train:grass/q.jpg"),
        ("balance", "missing-class", ""),
    }
    result = CliRunner().invoke(
        main, ["audit", "--split", f"train={splits['train']}", "--split", f"validation={tmp_path}"]
    )
    assert result.exit_code == 2 and "overlap" in result.output


def test_folder_audit_needs_two_readable_splits(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="at least two"):
        audit_splits({"train": tmp_path})
    with pytest.raises(DatasetError, match="not a readable folder"):
        audit_splits({"train": tmp_path, "validation": tmp_path / "missing"})


def test_split_folders_audited_without_the_crop_search(tmp_path: Path) -> None:
    """--split folders: a crop of a validation image in train is found by default, and with
    --no-crop-search the report says the search was skipped instead."""
    splits = make_split_folders(tmp_path)
    closer(splits["validation"] / "grass" / "grass_09.jpg", splits["train"] / "grass" / "c.png")
    reports = {}
    for switch in ([], ["--no-crop-search"]):
        given = [f"--split={name}={folder}" for name, folder in splits.items()]
        result = CliRunner().invoke(main, ["audit", "--json", *given, *switch])
        reports[bool(switch)] = (result.exit_code, json.loads(result.output))
    code, searched = reports[False]
    assert code == 1
    assert leaks_in(searched) == {
        ("cropped", ("train:grass/c.png", "validation:grass/grass_09.jpg"))
    }
    code, skipped = reports[True]
    assert code == 0 and skipped["clean"] is True
    near = next(c for c in skipped["checks"] if c["name"] == "near-duplicates")
    assert near["passed"] is True and near["skipped"] == ["crop-search"]


def test_unreadable_image_cannot_be_cleared(tmp_path: Path) -> None:
    splits = make_split_folders(tmp_path)
    (splits["train"] / "brick" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = CliRunner().invoke(
        main, ["audit", "--json", *(f"--split={n}={d}" for n, d in splits.items())]
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    found = [f for c in report["checks"] for f in c["findings"]]
    assert [(f["check"], f["kind"], f["paths"]) for f in found] == [
        ("exact-duplicates", "unreadable", ["train:brick/broken.jpg"])
    ]


def _header_with(out: Path, holdout: list[dict], rejected: list[dict]) -> None:
    header = json.loads((out / "augment.json").read_text())
    header["holdout"] = [*header["holdout"], *holdout]
    header["rejected"] = [*header.get("rejected", []), *rejected]
    (out / "augment.json").write_text(json.dumps(header, indent=2) + "\n")


def test_a_rejected_held_out_original_needs_no_file(out: Path) -> None:
    """augment.json may hold out an original the workers then rejected (it failed to
    decode): that is no finding, but an original that was not rejected and has no file is."""
    gone = {"path": "brick/gone.jpg", "sha256": "0" * 64, "split": "validation", "group": "g"}
    _header_with(out, [gone], [{"path": "brick/gone.jpg", "reason": "unreadable image"}])
    assert ("integrity", "header-holdout") not in kinds(out)
    _header_with(out, [{**gone, "path": "brick/lost.jpg"}], [])
    found = [f for f in audit_output(out).findings if f.kind == "header-holdout"]
    assert [f.paths for f in found] == [("brick/lost.jpg",)]


@pytest.mark.slow
def test_the_audit_does_not_hold_every_rejection(out: Path) -> None:
    """A labels file may reject millions of rows, all listed in augment.json: the audit
    reads them a few at a time, so its memory does not grow with them."""
    import tracemalloc

    many = [{"path": f"missing/{n:07d}.jpg", "reason": "no such file"} for n in range(200_000)]
    _header_with(out, [], many)
    del many
    tracemalloc.start()
    try:
        report = audit_output(out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.findings == []
    # Held, 200,000 parsed entries and the file's text are ~70 MB.
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB"
