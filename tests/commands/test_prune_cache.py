"""`augment prune-cache`: a TF-Hub retrain.py-style bottleneck cache keyed by file name
loses exactly the entries of outputs that a regenerated dataset no longer has, and nothing
else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from augment.cli import main
from augment.commands.prune_cache import output_name_of, prune_cache
from augment.errors import OutputError
from augment.expand import expand
from augment.model import ExpandOptions
from tests.helpers import DIGITS, SMALL_RECIPE

MODULE = "https~tfhub.dev~google~imagenet~mobilenet_v2_100_224~feature_vector~4"


def bottleneck_cache(cache: Path, out: Path) -> set[str]:
    """What retrain.py writes for OUT/train: bottleneck_dir/<label>/<file>_<module>.txt."""
    entries = set()
    for line in (out / "manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["split"] != "train":
            continue
        name = Path(r["path"]).name
        entry = cache / r["label"] / f"{name}_{MODULE}.txt"
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text("0.1,0.2,0.3")
        entries.add(entry.relative_to(cache).as_posix())
    return entries


@pytest.fixture()
def regenerated(tmp_path: Path) -> tuple[Path, Path, set[str], set[str], set[str]]:
    """A cache filled from a first run, then the dataset regenerated with another recipe.
    Returns (cache, out, every entry, stale entries, foreign files)."""
    out, cache = tmp_path / "out", tmp_path / "bottlenecks"
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(SMALL_RECIPE)
    second.write_text(SMALL_RECIPE.replace("p: 0.6", "p: 0.9"))
    expand(DIGITS, out, ExpandOptions(times=2, recipe=str(first), workers=1))
    entries = bottleneck_cache(cache, out)
    expand(DIGITS, out, ExpandOptions(times=2, recipe=str(second), workers=1))
    lines = (out / "manifest.jsonl").read_text().splitlines()
    current = {Path(json.loads(line)["path"]).name for line in lines}
    stale = {e for e in entries if output_name_of(Path(e).name) not in current}
    # Files the user keeps next to the cache: never recognised as entries.
    foreign = {"README.txt", "1/notes.md", "1/digit1_00.png_features.txt"}
    for name in foreign:
        (cache / name).write_text("mine")
    # A symbolic link named like a stale entry: links are never followed nor deleted.
    link = f"1/{Path(sorted(stale)[0]).name}"
    os.symlink(cache / "README.txt", cache / link)
    return cache, out, entries, stale, foreign | {link}


def remaining(cache: Path) -> set[str]:
    return {p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()}


def test_prune_removes_exactly_the_stale_entries(
    regenerated: tuple[Path, Path, set[str], set[str], set[str]],
) -> None:
    cache, out, entries, stale, foreign = regenerated
    # The recipe changed the variants (variant 1), not the preprocessed originals.
    assert stale and len(stale) == len(entries) // 2
    result = prune_cache(cache, out)
    assert set(result.stale) == stale
    assert result.kept == len(entries) - len(stale)
    assert remaining(cache) == (entries - stale) | foreign
    assert prune_cache(cache, out).stale == []  # idempotent


def test_dry_run_deletes_nothing(
    regenerated: tuple[Path, Path, set[str], set[str], set[str]],
) -> None:
    cache, out, _, stale, _ = regenerated
    before = remaining(cache)
    result = CliRunner().invoke(main, ["prune-cache", str(cache), str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    listed = {line.removeprefix("would remove ") for line in result.output.splitlines()[:-1]}
    assert listed == stale
    assert f"would remove {len(stale)} stale entries" in result.output
    assert remaining(cache) == before


def test_cli_prune(regenerated: tuple[Path, Path, set[str], set[str], set[str]]) -> None:
    cache, out, entries, stale, foreign = regenerated
    result = CliRunner().invoke(main, ["prune-cache", str(cache), str(out)])
    assert result.exit_code == 0, result.output
    assert f"removed {len(stale)} stale entries, kept {len(entries) - len(stale)}" in result.output
    assert remaining(cache) == (entries - stale) | foreign


def test_refuses_bad_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text("")
    with pytest.raises(OutputError, match="overlaps"):
        prune_cache(out, out)
    with pytest.raises(OutputError, match="does not exist"):
        prune_cache(tmp_path / "nope", out)
    (tmp_path / "cache").mkdir()
    (tmp_path / "elsewhere").mkdir()
    result = CliRunner().invoke(
        main, ["prune-cache", str(tmp_path / "cache"), str(tmp_path / "elsewhere")]
    )
    assert result.exit_code == 2 and "manifest.jsonl does not exist" in result.output
    help_text = CliRunner().invoke(main, ["prune-cache", "--help"]).output
    assert "Examples:" in help_text and "--dry-run" in help_text


def test_entry_names() -> None:
    name = "digit1_00__0123456789ab.png"
    assert output_name_of(f"{name}_{MODULE}.txt") == name
    assert output_name_of(f"{name}.npy") == name
    assert output_name_of(name) == name
    assert output_name_of("digit1_00.png_features.txt") is None
    assert output_name_of("digit1_00__0123456789ab.bmp.npy") is None


def test_an_augment_output_given_as_the_cache_is_refused(tmp_path: Path) -> None:
    """`prune-cache OLD_OUT NEW_OUT` would delete every image of the old output."""
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    old, new = tmp_path / "old", tmp_path / "new"
    expand(DIGITS, old, ExpandOptions(times=2, recipe=str(recipe), workers=1, seed=1))
    expand(DIGITS, new, ExpandOptions(times=2, recipe=str(recipe), workers=1, seed=2))
    before = sorted(p for p in old.rglob("*") if p.is_file())
    result = CliRunner().invoke(main, ["prune-cache", str(old), str(new)])
    assert result.exit_code == 2, result.output
    assert "is an augment output, not a cache: nothing deleted" in result.output
    assert sorted(p for p in old.rglob("*") if p.is_file()) == before
