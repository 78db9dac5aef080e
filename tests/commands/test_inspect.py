"""`augment inspect SRC`: what expand would see and hold out, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from augment.cli import main
from augment.expand import expand
from augment.model import ExpandOptions
from augment.stages.manifest import read_manifest
from tests import faults
from tests.helpers import DIGITS, SMALL_RECIPE, TEXTURES


def test_inspect_plans_the_split_expand_makes(tmp_path: Path) -> None:
    args = ["inspect", str(TEXTURES), "--val", "0.2", "--test", "0.1", "--seed", "3", "--json"]
    before = faults.tree_state(TEXTURES)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert faults.tree_state(TEXTURES) == before  # nothing written
    found = json.loads(result.stdout)
    assert found["layout"] == "class folders" and found["split"] == "held out"
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "out"
    options = ExpandOptions(times=1, recipe=str(recipe), val=0.2, test=0.1, seed=3, workers=1)
    expand(TEXTURES, out, options)
    made: dict[str, dict[str, int]] = {}
    for r in read_manifest(out):
        per_class = made.setdefault(r["split"], {})
        per_class[r["label"]] = per_class.get(r["label"], 0) + 1
    assert found["planned"] == made


def test_inspect_shows_a_split_source_and_its_rejections(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for split in ("train", "Valid"):
        shutil.copytree(DIGITS, src / split)
    (src / "train" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = CliRunner().invoke(main, ["inspect", str(src)])
    assert result.exit_code == 0, result.output
    assert f"{src}: split folders of class folders, 10 classes" in result.stdout
    assert "originals per split (the source's own split):" in result.stdout
    planned = json.loads(CliRunner().invoke(main, ["inspect", str(src), "--json"]).stdout)
    assert {s: sum(c.values()) for s, c in planned["planned"].items()} == {
        "train": 60,
        "validation": 60,
    }
    assert "would reject 1 files:\n  train/3/broken.png: not a readable image" in result.stdout
    # Every picture is in both splits: the source's split leaks, and inspect says so.
    assert "warning: duplicate originals in different splits of the source:" in result.stdout
    assert not (tmp_path / "out").exists()
