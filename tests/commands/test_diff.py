"""`augment diff OLD NEW`: the library's classes of change and the command around it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from augment.cli import main
from augment.commands.diff import diff_records
from augment.model import ExpandOptions
from augment.run import expand
from tests.helpers import DIGITS, SMALL_RECIPE


def record(path: str, sha: str, source: str = "a/x.png", variant: int = 1, **kw: object) -> dict:
    return {
        "path": path,
        "split": "train",
        "label": "a",
        "sha256": sha,
        "sources": [{"path": source, "sha256": kw.pop("source_sha", "s1"), "weight": 1.0}],
        "variant": variant,
        "seed": kw.pop("seed", 7),
        "recipe": kw.pop("recipe", "r1"),
    }


def test_classes_of_change() -> None:
    old = [
        record("train/a/x__0.png", "h0", variant=0),
        record("train/a/x__1.png", "h1", variant=1),
        record("train/a/x__2.png", "h2", variant=2),
        record("train/a/gone__1.png", "h3", source="a/gone.png"),
        record("train/a/same__9.png", "h4", source="a/same.png"),
    ]
    new = [
        record("train/a/x__0.png", "h0", variant=0),  # unchanged
        record("train/a/x__1b.png", "h5", variant=1, recipe="r2"),  # renamed by the recipe
        record("train/a/x__2b.png", "h6", variant=2, source_sha="s2", seed=8),  # new source
        record("train/a/new__1.png", "h7", source="a/new.png"),  # added
        record("train/a/same__9.png", "h8", source="a/same.png"),  # same name, other bytes
    ]
    diff = diff_records(old, new)
    assert diff.unchanged == ["train/a/x__0.png"]
    assert diff.added == ["train/a/new__1.png"]
    assert diff.removed == ["train/a/gone__1.png"]
    assert {(c.old, c.new, c.why) for c in diff.changed} == {
        ("train/a/x__1.png", "train/a/x__1b.png", ("recipe",)),
        ("train/a/x__2.png", "train/a/x__2b.png", ("source",)),
        ("train/a/same__9.png", "train/a/same__9.png", ("bytes",)),
    }
    assert not diff.identical


def test_ambiguous_lineage_is_not_matched() -> None:
    old = [record("train/a/p.png", "1"), record("train/a/q.png", "2")]  # same lineage twice
    new = [record("train/a/r.png", "3")]
    diff = diff_records(old, new)
    assert diff.changed == [] and diff.added == ["train/a/r.png"] and len(diff.removed) == 2


@pytest.fixture(scope="module")
def two_outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """DIGITS expanded, then again with one source modified, as two output folders."""
    root = tmp_path_factory.mktemp("diff")
    src, recipe = root / "src", root / "small.yaml"
    shutil.copytree(DIGITS, src)
    recipe.write_text(SMALL_RECIPE)
    options = ExpandOptions(times=2, recipe=str(recipe), workers=1)
    expand(src, root / "v1", options)
    victim = sorted((src / "4").iterdir())[0]
    victim.write_bytes((src / "5" / sorted(p.name for p in (src / "5").iterdir())[0]).read_bytes())
    expand(src, root / "v2", options)
    return root / "v1", root / "v2"


@pytest.mark.slow
def test_cli_diff_human(two_outputs: tuple[Path, Path]) -> None:
    v1, v2 = two_outputs
    result = CliRunner().invoke(main, ["diff", str(v1), str(v2)])
    assert result.exit_code == 0, result.output
    changed = [line for line in result.output.splitlines() if line.startswith("~ ")]
    assert changed and all("/4/" in line and "(source)" in line for line in changed)
    assert not [line for line in result.output.splitlines() if line[:2] in ("+ ", "- ")]
    assert result.output.splitlines()[-1].startswith("0 added, 0 removed, ")


def test_cli_diff_json_and_exit_code(two_outputs: tuple[Path, Path]) -> None:
    v1, v2 = two_outputs
    result = CliRunner().invoke(main, ["diff", str(v1 / "manifest.jsonl"), str(v2), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["counts"]["changed"] in (1, 2) and doc["counts"]["added"] == 0
    assert doc["counts"]["unchanged"] == len(doc["unchanged"]) > 0
    assert CliRunner().invoke(main, ["diff", str(v1), str(v2), "--exit-code"]).exit_code == 1
    same = CliRunner().invoke(main, ["diff", str(v1), str(v1), "--exit-code"])
    assert same.exit_code == 0 and "0 changed" in same.output


def test_cli_diff_errors_and_help(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "empty"), str(tmp_path / "empty")])
    assert result.exit_code == 2 and "manifest.jsonl does not exist" in result.output
    assert "Traceback" not in result.output
    help_text = CliRunner().invoke(main, ["diff", "--help"]).output
    assert "Examples:" in help_text and "augment diff" in help_text and "--json" in help_text


@given(
    old=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 3)), max_size=12),
    new=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 3)), max_size=12),
)
def test_every_output_is_in_exactly_one_class(
    old: list[tuple[int, int, int]], new: list[tuple[int, int, int]]
) -> None:
    def manifest(items: list[tuple[int, int, int]]) -> list[dict]:
        by_path = {
            f"train/a/s{src}__{name}.png": record(
                f"train/a/s{src}__{name}.png", f"h{name}.{v}", source=f"a/s{src}.png", variant=v
            )
            for name, src, v in items
        }
        return list(by_path.values())

    a, b = manifest(old), manifest(new)
    diff = diff_records(a, b)
    olds = diff.removed + diff.unchanged + [c.old for c in diff.changed]
    news = diff.added + diff.unchanged + [c.new for c in diff.changed]
    assert sorted(olds) == sorted(r["path"] for r in a)
    assert sorted(news) == sorted(r["path"] for r in b)
    assert diff.identical == (
        {r["path"]: r["sha256"] for r in a} == {r["path"]: r["sha256"] for r in b}
    )
