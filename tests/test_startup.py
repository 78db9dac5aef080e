"""Start-up only for what a run uses (issue 21): a command imports the modules its run
needs, and the rest (another annotation format's parser, another output format's writer,
another command) only when a run needs them. benchmarks/startup.py measures what it costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT, tiny_source

# The `augment` command as installed runs it (augment/__main__.py), in a new process that
# writes the names of every module it imported at exit.
_RECORDING = """
import atexit, json, runpy, sys
record = sys.argv.pop()
atexit.register(lambda: open(record, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "augment"
runpy.run_module("augment", run_name="__main__", alter_sys=True)
"""

# A classification run reads no annotations and writes folders: none of these is its.
NOT_A_CLASSIFICATION_RUNS = (
    "xml.etree.ElementTree",  # VOC annotations
    "xml.sax.saxutils",  # VOC outputs
    "pycocotools",  # COCO masks and shapes
    "tarfile",  # WebDataset shards
    "augment.writers.webdataset",
    "augment.writers.parquet",
    "augment.stores.run",  # store URLs (the s3 extra)
    "augment.stages.ray_executor",
    "augment.commands.diff",  # the other commands
    "augment.commands.audit",
    "augment.commands.preview",
    "augment.commands.inspect",
)


def modules_of(tmp_path: Path, *args: str) -> set[str]:
    record = tmp_path / "modules.json"
    command = [sys.executable, "-c", _RECORDING, *args, str(record)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(json.loads(record.read_text()))


def test_a_classification_expand_imports_only_what_it_uses(
    tmp_path: Path, small_recipe: Path
) -> None:
    src = tiny_source(tmp_path / "src")
    args = ["expand", str(src), str(tmp_path / "out"), "-r", str(small_recipe), "-j", "1", "-q"]
    loaded = modules_of(tmp_path, *args, "--times", "2")
    assert "augment.full_run" in loaded and "albumentations" in loaded  # it did run
    assert sorted(loaded.intersection(NOT_A_CLASSIFICATION_RUNS)) == []


def test_help_imports_no_image_library_nor_yaml(tmp_path: Path) -> None:
    loaded = modules_of(tmp_path, "--help")
    assert sorted(loaded.intersection({"yaml", "numpy", "cv2", "PIL", "albumentations"})) == []


def test_a_run_whose_sources_are_known_plain_jpegs_does_not_load_pillow(
    tmp_path: Path, small_recipe: Path
) -> None:
    """A second run with other options reads no source header (their stamps vouch for
    them) and decodes plain JPEGs with simplejpeg: Pillow's image module is not imported."""
    import os

    import numpy as np
    from PIL import Image

    src = tmp_path / "src"
    for c, name in enumerate(("cat", "dog")):
        (src / name).mkdir(parents=True)
        for i in range(3):
            path = src / name / f"{i}.jpg"
            pixels = np.random.default_rng(10 * c + i).integers(0, 256, (32, 48, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
            os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    args = ["expand", str(src), str(tmp_path / "out"), "-r", str(small_recipe), "-j", "1", "-q"]
    assert "PIL.Image" in modules_of(tmp_path, *args, "--times", "2")  # read at ingest
    loaded = modules_of(tmp_path, *args, "--times", "3")
    assert "augment.full_run" in loaded  # a full run, not a proven no-op
    assert "PIL.Image" not in loaded
