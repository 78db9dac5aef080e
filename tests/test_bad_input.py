"""Messy source datasets: every bad file gets a clear status, the good ones are still done,
and the source is never changed.

One real messy tree (every fault of docs/bad-input.md, written with Pillow) is expanded once
through the real CLI with two worker processes; each test then checks one fault's outcome.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from augment.cli import main
from augment.defaults import DEFAULT_MAX_PIXELS
from augment.errors import DatasetError
from augment.expand import expand
from augment.imaging.codec import UnreadableImage, decode
from augment.model import ExpandOptions
from augment.stages.ingest import ingest
from augment.stages.manifest import read_manifest
from tests import faults
from tests.helpers import DIGITS, ROOT, TEXTURES, file_tree

# No resize: each output keeps its source's size, so shapes and colours can be checked.
# A magenta background shows that transparency is composited onto the recipe's colour.
MESSY_RECIPE = """\
description: keep sizes, for the bad-input tests
preprocess:
  background: [255, 0, 255]
augment:
  - HorizontalFlip: {p: 0.5}
"""
MAX_PIXELS = 200_000  # the messy tree's "huge" image is 1000 x 1000


@dataclass
class MessyRun:
    src: Path
    out: Path
    before: dict[str, str]
    after: dict[str, str]
    result: Result
    header: dict
    records: list[dict]

    @property
    def rejected(self) -> dict[str, str]:
        return {r["path"]: r["reason"] for r in self.header["rejected"]}

    def outputs_of(self, source: str) -> list[dict]:
        return [r for r in self.records if r["sources"][0]["path"] == source]


def _build_messy_tree(root: Path, outside: Path) -> Path:
    src = root / "src"
    cat, dog, tiny = src / "cat", src / "dog house ü", src / "tiny"
    hidden_only = src / "empty" / ".thumbnails"  # a class folder holding only hidden files
    folders = (cat, dog, tiny, hidden_only, src / ".git", src / "__MACOSX" / "cat")
    for folder in folders:
        folder.mkdir(parents=True)
    for i in range(1, 6):  # the good files: real photos
        (cat / f"grass_{i:02d}.jpg").write_bytes(faults.photo(f"grass/grass_{i:02d}.jpg"))
        (dog / f"brick_{i:02d}.jpg").write_bytes(faults.photo(f"brick/brick_{i:02d}.jpg"))
    for i in range(1, 3):
        (tiny / f"d{i}.png").write_bytes((DIGITS / "3" / f"digit3_0{i}.png").read_bytes())
    files = {
        "cat/empty.jpg": b"",
        "cat/truncated.jpg": faults.truncated_jpeg(),
        "cat/notes.png": b"meeting notes, not a picture\n",
        "cat/really_png.jpg": faults.encoded(faults.rgb_image(), "PNG"),
        "cat/huge.png": faults.encoded(Image.new("L", (1000, 1000), 7), "PNG"),
        "cat/cmyk.jpg": faults.cmyk_jpeg(),
        "cat/deep16.png": faults.png16(),
        "cat/palette.png": faults.palette_png_with_transparency(),
        "cat/rgba.png": faults.rgba_png(),
        "cat/gray.jpg": faults.grayscale_jpeg(),
        "cat/rotated.jpg": faults.exif_rotated_jpeg(),
        "cat/anim.gif": faults.animated_gif(),
        "cat/chat noir é 猫.jpg": faults.photo("grass/grass_06.jpg"),
        "cat/.DS_Store": b"\0\0\0\1Bud1",
        "cat/notes.txt": b"not an image",
        "cat/image.psd": faults.encoded(faults.rgb_image(), "PNG"),
        "cat/photoshop.png": b"8BPS\0\1" + bytes(20),  # a PSD header under a .png name
        ".git/HEAD": b"ref: refs/heads/main\n",
        "empty/.thumbnails/grass_01.jpg": faults.photo(),
        "__MACOSX/cat/._grass_01.jpg": b"\0\5\26\7 AppleDouble resource fork",
        "stray.jpg": faults.photo(),  # not inside a class folder
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    os.symlink("loop.png", cat / "loop.png")  # a link to itself
    (outside / "secret.jpg").write_bytes(faults.photo("gravel/gravel_01.jpg"))
    os.symlink(outside / "secret.jpg", cat / "secret.jpg")
    os.symlink(outside, dog / "linked_folder")
    os.symlink("..", cat / "parent_loop")  # a folder link loop: must not hang the walk
    (cat / os.fsdecode(b"bad-\xff-name.jpg")).write_bytes(faults.photo("grass/grass_07.jpg"))
    return src


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> MessyRun:
    root = tmp_path_factory.mktemp("messy")
    outside = root / "outside"
    outside.mkdir()
    src = _build_messy_tree(root, outside)
    recipe = root / "keep-size.yaml"
    recipe.write_text(MESSY_RECIPE)
    out = root / "out"
    before = faults.tree_state(root)
    result = CliRunner().invoke(
        main,
        [
            "expand", str(src), str(out), "--times", "2", "--recipe", str(recipe),
            "--val", "1", "--test", "1", "--seed", "5", "-j", "2",
            "--max-pixels", str(MAX_PIXELS), "--strict",
        ],
    )  # fmt: skip
    after = faults.tree_state(root)
    header = json.loads((out / "augment.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return MessyRun(src, out, before, after, result, header, records)


def test_the_run_finishes_and_strict_exits_1(messy: MessyRun) -> None:
    assert messy.result.exit_code == 1, messy.result.output
    assert messy.result.exception is None or isinstance(messy.result.exception, SystemExit)
    assert "Traceback" not in messy.result.output
    assert "--strict" in messy.result.output
    # The good files were still processed: 5 photos per class, plus the odd-but-valid ones.
    assert len({r["sources"][0]["path"] for r in messy.records}) >= 18


def test_the_source_tree_is_unchanged(messy: MessyRun) -> None:
    assert messy.before == {k: v for k, v in messy.after.items() if not _in_out(k)}


def _in_out(hex_rel: str) -> bool:
    return bytes.fromhex(hex_rel).split(b"/")[0] == b"out"


REJECTED = [
    ("cat/empty.jpg", "empty file (0 bytes)"),
    ("cat/truncated.jpg", "truncated"),
    ("cat/notes.png", "not an image in a supported format"),
    ("cat/photoshop.png", "not an image in a supported format"),
    ("cat/huge.png", f"1000x1000 pixels exceeds the limit of {MAX_PIXELS}"),
    ("cat/notes.txt", "not an image file extension"),
    ("cat/image.psd", "not an image file extension"),
    ("cat/loop.png", "symbolic link loop"),
    ("cat/secret.jpg", "symbolic link pointing outside the source folder"),
    ("cat/parent_loop/", "symbolic link to a folder: not followed"),
    ("dog house ü/linked_folder/", "symbolic link to a folder: not followed"),
    ("cat/bad-\\xff-name.jpg", "not valid UTF-8"),
    ("empty/", "empty class folder"),
    ("stray.jpg", "not inside a class folder"),
]


@pytest.mark.parametrize(("path", "reason"), REJECTED, ids=[p for p, _ in REJECTED])
def test_each_bad_file_is_listed_with_its_reason(messy: MessyRun, path: str, reason: str) -> None:
    assert reason in messy.rejected[path]
    # ...in the summary on screen too, one greppable `path: reason` line each,
    assert f"  {path}: {messy.rejected[path]}" in messy.result.output
    # ...and nothing of it reaches the output: no file, no record, no planned-but-missing one.
    assert not messy.outputs_of(path)
    stem = Path(path.rstrip("/")).stem
    assert not [p for p in messy.out.rglob(f"{stem}_nohash_*")]


def test_every_rejection_is_accounted_for(messy: MessyRun) -> None:
    assert set(messy.rejected) == {p for p, _ in REJECTED}


def test_hidden_files_are_skipped_quietly(messy: MessyRun) -> None:
    assert not [p for p in messy.rejected if "DS_Store" in p or ".git" in p or "MACOSX" in p]
    assert "__MACOSX" not in messy.header["source"]["classes"]
    assert not list(messy.out.rglob("*DS_Store*"))


def test_a_file_rejected_only_at_decode_time_is_reported_like_the_others(
    messy: MessyRun,
) -> None:
    """Pillow reads a truncated JPEG's header fine; only the worker finds the missing data."""
    assert "cat/truncated.jpg" in [h["path"] for h in messy.header["holdout"]]
    assert not [p for p in messy.out.rglob(".*") if p.is_file() and p.parent != messy.out]
    assert not any("truncated" in r["path"] for r in read_manifest(messy.out))


def _output_pixels(messy: MessyRun, source: str) -> np.ndarray:
    original = [r for r in messy.outputs_of(source) if r["variant"] == 0]
    assert len(original) == 1, messy.outputs_of(source)
    with Image.open(messy.out / original[0]["path"]) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


def test_wrong_extension_is_read_as_what_it_is(messy: MessyRun) -> None:
    (record,) = [r for r in messy.outputs_of("cat/really_png.jpg") if r["variant"] == 0]
    assert record["path"].endswith(".png")  # --format same follows the real format
    assert tuple(_output_pixels(messy, "cat/really_png.jpg")[0, 0]) == (200, 40, 40)


def test_cmyk_is_converted_to_rgb(messy: MessyRun) -> None:
    pixel = _output_pixels(messy, "cat/cmyk.jpg")[15, 20].astype(int)
    assert np.abs(pixel - (30, 120, 220)).max() < 12


def test_16_bit_png_is_scaled_by_its_full_range(messy: MessyRun) -> None:
    row = _output_pixels(messy, "cat/deep16.png")[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row.astype(int)) >= 0)


def test_transparency_is_composited_on_the_recipe_background(messy: MessyRun) -> None:
    rgba = _output_pixels(messy, "cat/rgba.png")
    assert tuple(rgba[10, 5]) == (0, 0, 255) and tuple(rgba[10, 35]) == (255, 0, 255)
    palette = _output_pixels(messy, "cat/palette.png")
    assert {tuple(p) for p in palette.reshape(-1, 3)} == {(255, 0, 255)}


def test_grayscale_becomes_three_equal_channels(messy: MessyRun) -> None:
    gray = _output_pixels(messy, "cat/gray.jpg")
    assert gray.shape == (30, 40, 3) and np.array_equal(gray[..., 0], gray[..., 2])


def test_exif_rotation_is_applied(messy: MessyRun) -> None:
    assert _output_pixels(messy, "cat/rotated.jpg").shape[:2] == (80, 40)  # upright: portrait


def test_animated_gif_gives_its_first_frame(messy: MessyRun) -> None:
    first = _output_pixels(messy, "cat/anim.gif")
    assert np.abs(first.astype(int) - (255, 0, 0)).max() < 8


def test_unicode_and_spaces_in_names(messy: MessyRun) -> None:
    outputs = messy.outputs_of("cat/chat noir é 猫.jpg")
    assert outputs and all((messy.out / r["path"]).is_file() for r in outputs)
    assert all("chat noir é 猫_nohash_" in r["path"] for r in outputs)
    dog = [r for r in messy.records if r["label"] == "dog house ü"]
    assert dog and all(r["path"].split("/")[1] == "dog house ü" for r in dog)
    with Image.open(messy.out / outputs[0]["path"]) as img:
        img.load()


def test_a_class_too_small_to_hold_out_stays_in_train(messy: MessyRun) -> None:
    assert "class 'tiny' has fewer than 3 originals: all kept in train" in messy.result.output
    assert {r["split"] for r in messy.records if r["label"] == "tiny"} == {"train"}
    assert sum(1 for r in messy.records if r["label"] == "tiny") == 2 * 2


def test_empty_class_folder_is_not_a_class(messy: MessyRun) -> None:
    assert "empty" not in messy.header["source"]["classes"]
    assert not (messy.out / "train" / "empty").exists()


def test_a_rerun_of_a_messy_tree_is_stable(messy: MessyRun, tmp_path: Path) -> None:
    """The same rejections come back, and nothing good is redone."""
    out = tmp_path / "out"
    shutil.copytree(messy.out, out)
    recipe = messy.src.parent / "keep-size.yaml"
    options = ExpandOptions(
        times=2, recipe=str(recipe), val=1, test=1, seed=5, workers=1, max_pixels=MAX_PIXELS
    )
    again = expand(messy.src, out, options)
    assert again.written == 0
    assert {r.path for r in again.rejected} == set(messy.rejected)
    assert file_tree(out) == file_tree(messy.out)


def test_single_class_dataset(tmp_path: Path, small_recipe: Path) -> None:
    src = tmp_path / "src" / "only"
    shutil.copytree(TEXTURES / "grass", src)
    before = faults.tree_state(src.parent)
    summary = expand(src.parent, tmp_path / "out", ExpandOptions(times=2, recipe=str(small_recipe)))
    assert set(summary.counts) == {"train", "validation", "test"}
    assert all(set(c) == {"only"} for c in summary.counts.values())
    assert faults.tree_state(src.parent) == before


def test_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = faults.png_declaring(50_000, 50_000)  # 2.5 gigapixels in 100 bytes
    assert len(bomb) < 200
    with pytest.raises(UnreadableImage, match=f"limit of {DEFAULT_MAX_PIXELS}"):
        decode(bomb)
    with pytest.raises(UnreadableImage, match="exceeds the limit of 1000 pixels"):
        decode(faults.png_declaring(100, 100), max_pixels=1000)


def test_max_pixels_can_be_raised_past_pillows_own_limit() -> None:
    """--max-pixels is the one guard: a user who raises it is not overruled by Pillow's."""
    pillows_own = Image.MAX_IMAGE_PIXELS
    big = faults.png_declaring(20_000, 20_000)  # 400 M pixels, over twice Pillow's default
    with pytest.raises(UnreadableImage, match="not a readable image"):  # judged on its data
        decode(big, max_pixels=500_000_000)
    assert pillows_own == Image.MAX_IMAGE_PIXELS  # Pillow's guard is restored


# --- labels files ----------------------------------------------------------------------------


def _labels_tree(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for i in range(6):
        (root / "images" / f"{i}.jpg").write_bytes(faults.photo(f"grass/grass_0{i + 1}.jpg"))
    (outside / "o.jpg").write_bytes(faults.photo())
    os.symlink(outside, root / "images" / "linked")
    return root


def test_labels_file_faults(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = _labels_tree(tmp_path, outside)
    rows = [f"images/{i}.jpg,{'a' if i < 3 else 'b'}" for i in range(6)]
    rows += [
        "images/missing.jpg,a",  # missing file
        "images/0.jpg,a",  # duplicate row
        "images/1.jpg,b",  # the same file again under another label
        "../data/images/2.jpg,a",  # escapes the labels file's folder
        "images/../../outside/o.jpg,a",  # escapes after normalising
        "/etc/hostname.jpg,a",  # absolute
        "images/linked/o.jpg,a",  # through a linked folder that points outside
        ",a",  # no path
        "images/5.jpg,",  # no label
        "images,a",  # a folder
        "images/0\0.jpg,a",  # a NUL byte
    ]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    before = faults.tree_state(tmp_path)
    dataset = ingest(root / "labels.csv")
    reasons = {r.path: r.reason for r in dataset.rejected}
    assert [o.path for o in dataset.originals] == [f"images/{i}.jpg" for i in range(6)]
    assert "file not found" in reasons["images/missing.jpg"]
    assert "duplicate row" in reasons["images/0.jpg"]
    assert "listed again with another label ('a' first)" in reasons["images/1.jpg"]
    for escaping in ("../data/images/2.jpg", "images/../../outside/o.jpg"):
        assert "escapes the labels file's folder" in reasons[escaping]
    assert "absolute path outside the labels file's folder" in reasons["/etc/hostname.jpg"]
    assert "pointing outside the source folder" in reasons["images/linked/o.jpg"]
    assert "empty path or label" in reasons["labels.csv line 15"]
    assert "empty path or label" in reasons["images/5.jpg"]
    assert "not an image file extension" in reasons["images"]
    assert "contains a NUL byte" in reasons[repr("images/0\0.jpg")]
    assert faults.tree_state(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,label\nimages/0.jpg,caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
        (b"name,kind\nimages/0.jpg,a\n", "needs a header with a path column"),
        (b"", "needs a header"),
        (b"path;label\nimages/0.jpg;a\n", "separated by commas, not ';'"),
        (b"path,label\n", "no usable images"),
    ],
    ids=["latin-1", "wrong-header", "empty", "semicolons", "header-only"],
)
def test_unreadable_labels_files_are_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    root = _labels_tree(tmp_path, tmp_path)
    (root / "labels.csv").write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        ingest(root / "labels.csv")
    result = CliRunner().invoke(main, ["expand", str(root / "labels.csv"), str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("transform", "reason"),
    [("RandomCrop: {height: 90, width: 90}", "Crop size")],
)
def test_a_recipe_that_does_not_fit_an_image_rejects_that_image(
    tmp_path: Path, transform: str, reason: str
) -> None:
    """Loading cannot know image sizes: a crop larger than some images is found per image."""
    src = tmp_path / "src"
    shutil.copytree(TEXTURES / "grass", src / "large")  # sides 96-200: a 90 x 90 crop fits
    shutil.copytree(DIGITS / "3", src / "small")  # 32 x 32: it does not
    recipe = tmp_path / "crop.yaml"
    recipe.write_text(f"augment:\n  - {transform}\n")
    options = ExpandOptions(times=3, recipe=str(recipe), val=0, test=0, workers=1)
    summary = expand(src, tmp_path / "out", options)
    rejected = {r.path: r.reason for r in summary.rejected}
    failing = {p.relative_to(src).as_posix() for p in src.rglob("*.*")}
    if reason == "Crop size":
        failing = {p for p in failing if p.startswith("small/")}
    assert set(rejected) == failing
    assert all("the recipe cannot be applied to this image" in r for r in rejected.values())
    assert all(reason in r for r in rejected.values())
    made = {
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*_nohash_*")
    }
    assert made == {r["path"] for r in read_manifest(tmp_path / "out")}  # no orphan files
    assert summary.counts.get("train", {}).get("large", 0) == (30 if "Crop" in reason else 0)


def test_without_strict_rejections_are_reported_and_the_exit_code_is_0(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(DIGITS / "3", src / "three")
    (src / "three" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = CliRunner().invoke(main, ["expand", str(src), str(tmp_path / "out"), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert "rejected 1 input files" in result.output
    expected = "  three/broken.png: not a readable image: starts like a PNG file but is damaged"
    assert expected in result.output


def test_the_docs_table_shows_every_reason_a_user_can_get() -> None:
    docs = (ROOT / "docs" / "bad-input.md").read_text(encoding="utf-8")
    assert "docs/bad-input.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    for _, reason in REJECTED:
        assert reason.split(f" {MAX_PIXELS}")[0].replace("1000x1000", "") in docs, reason


def test_unreadable_folders_and_files_are_listed_not_lost(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(DIGITS / "3", src / "three")
    shutil.copytree(DIGITS / "8", src / "eight")
    (src / "three" / "digit3_01.png").chmod(0o000)
    (src / "eight").chmod(0o000)
    try:
        preexec = faults.permission_bits_binding()
        script = (
            "import json, sys; from pathlib import Path; from augment.stages.ingest import ingest; "
            "d = ingest(Path(sys.argv[1])); "
            "print(json.dumps({r.path: r.reason for r in d.rejected}))"
        )
        child = subprocess.run(
            [sys.executable, "-c", script, str(src)],
            capture_output=True,
            text=True,
            preexec_fn=preexec,
            cwd=ROOT,
            check=False,
        )
    finally:
        (src / "eight").chmod(0o755)
        (src / "three" / "digit3_01.png").chmod(0o644)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {
        "eight/": "cannot read folder: Permission denied",
        "three/digit3_01.png": "cannot read: Permission denied",
    }
