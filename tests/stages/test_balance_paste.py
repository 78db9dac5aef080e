"""`--balance instances` with a CopyPaste entry: the balancing chooses what is pasted, so a
rare class gains pasted objects and the common one gains none (stages/balance.py,
stages/partners.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from augment.commands.report import format_summary
from augment.model import ExpandOptions, Original
from augment.recipe.build import load_recipe
from augment.run import expand
from augment.stages.balance import Brought, instance_variants
from augment.stages.ingest import ingest
from augment.stages.partners import PartnerPool, added_objects, plan_mix
from augment.stages.plan import job_seed
from tests.helpers import GEOMETRIC_RECIPE, Scene, augment_command, every_file, write_coco

PASTE = "mix:\n  - CopyPaste: {p: 0.5, max_per_output: 2}\n"
RECIPE = GEOMETRIC_RECIPE.replace("rotate: [-30, 30]", "rotate: 0") + PASTE


def lopsided() -> list[Scene]:
    """18 scenes, every one with a `magenta` (a third with two); five with a `green` beside
    it, two with a `blue` beside it: 24 / 5 / 2 objects, the rare ones never alone."""
    made: list[Scene] = []
    for i in range(18):
        objects = [("magenta", (10, 12, 30, 30))]
        if i % 3 == 0:
            objects.append(("magenta", (40, 40, 58, 60)))
        if i in (2, 5, 8, 11, 14):
            objects.append(("green", (62, 14, 80, 34)))
        if i in (4, 13):
            objects.append(("blue", (62, 44, 82, 66)))
        made.append((f"scene_{i:02d}", 96 + (i * 8) % 40, 80 + (i * 6) % 30, objects))
    return made


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lopsided")
    recipe = root / "paste.yaml"
    recipe.write_text(RECIPE)
    return write_coco(root / "src", lopsided()), recipe


def _spread(counts: Mapping[str, int]) -> float:
    return max(counts.values()) / min(counts.values())


def test_steered_pastes_go_to_the_lagging_classes_not_the_common_one(
    source: tuple[Path, Path],
) -> None:
    """The same balancing loop with the plan's uniform paste draw and with the steered one:
    steered, no `magenta` is pasted, most pastes are `blue`, and the classes end closer."""
    src, recipe_path = source
    recipe = load_recipe(str(recipe_path))
    train_list = ingest(src).originals
    train: dict[str, list[Original]] = {}  # by the image's label, its dominant class
    for original in train_list:
        train.setdefault(original.label, []).append(original)
    pool = PartnerPool(train_list, recipe.mix)

    def steered(original: Original, variant: int, wanted: Mapping[str, float] | None) -> Brought:
        seed = job_seed(7, original.sha256, variant)
        mix = plan_mix(original, seed, recipe.mix, pool, recipe.preprocess.size, wanted)
        if mix is None:
            return Brought(Counter())
        return Brought(added_objects(mix, recipe.preprocess.size), mix.kind == "copypaste")

    def uniform(original: Original, variant: int, wanted: Mapping[str, float] | None) -> Brought:
        return steered(original, variant, None)

    plain = dict.fromkeys(train, (0, 1, 2))  # --times 3
    _, before = instance_variants(train, plain, 7, uniform)
    _, after = instance_variants(train, plain, 7, steered)
    pasted = {c: n["pasted"] for c, n in after.items()}
    assert pasted["magenta"] == 0
    assert pasted["blue"] > sum(pasted.values()) / 2
    assert before["magenta"]["pasted"] > 0  # the uniform draw pastes the common class most
    times = {c: n["times"] for c, n in after.items()}
    planned, unsteered = ({c: n["planned"] for c, n in r.items()} for r in (after, before))
    assert _spread(planned) < _spread(unsteered) < _spread(times)
    # The common class is not inflated: it stops at its plain count (the target), give or
    # take the last image's own objects (at most two magenta).
    assert planned["magenta"] <= times["magenta"] + 2


def _train_objects(out: Path) -> tuple[Counter[str], Counter[str]]:
    """Objects per class in the train outputs' records, and the pasted instances' classes
    as the records' CopyPaste entries list them."""
    objects: Counter[str] = Counter()
    pasted: Counter[str] = Counter()
    for line in (out / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] != "train":
            continue
        objects.update(record["annotation"]["counts"])
        for entry in record["params"]:
            if entry["transform"] == "CopyPaste":
                pasted.update(i["label"] for i in entry["instances"])
    return objects, pasted


def test_the_run_pastes_what_the_balance_planned_and_records_it(
    source: tuple[Path, Path], tmp_path: Path
) -> None:
    """Through the real run: the records' pasted instances are the plan's, the objects per
    class end closer to equal than plain --times 3, augment.json and the summary show the
    plan, a rerun writes nothing, and a name both runs share holds the same bytes."""
    src, recipe = source
    options = ExpandOptions(times=3, recipe=str(recipe), workers=1, val=0, test=0)
    expand(src, tmp_path / "plain", options)
    balanced = ExpandOptions(**{**options.__dict__, "balance": "instances"})
    summary = expand(src, tmp_path / "balanced", balanced)
    plan = summary.balanced_objects
    objects, pasted = _train_objects(tmp_path / "balanced")
    assert pasted == {c: n["pasted"] for c, n in plan.items() if n["pasted"]}
    assert "magenta" not in pasted and pasted["blue"] > pasted["green"]
    assert _spread(objects) < _spread(_train_objects(tmp_path / "plain")[0]) / 2
    assert objects["magenta"] <= plan["magenta"]["times"] + 2  # as in the test above
    header = json.loads((tmp_path / "balanced" / "augment.json").read_text())
    assert header["balance"]["objects"] == plan
    table = format_summary(summary).split("balanced train objects")[1].splitlines()
    assert table[1].endswith("of which pasted")
    blue = next(line.split() for line in table if line.split()[:1] == ["blue"])
    assert blue[1:] == [str(plan["blue"][k]) for k in ("originals", "times", "planned",
                                                         "mixed", "pasted")]  # fmt: skip
    again = expand(src, tmp_path / "balanced", balanced)
    assert again.written == 0 and again.balanced_objects == plan
    plain_files, balanced_files = every_file(tmp_path / "plain"), every_file(tmp_path / "balanced")
    for name in plain_files.keys() & balanced_files.keys():
        if name.startswith("images/"):
            assert plain_files[name][2] == balanced_files[name][2], name


@pytest.mark.slow
def test_one_and_two_workers_make_the_same_bytes(source: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess

    src, recipe = source
    trees = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        args = ["expand", str(src), str(out), "-r", str(recipe), "-n", "3", "--val", "0"]
        args += ["--test", "0", "--balance", "instances", "--workers", workers]
        run = subprocess.run(augment_command(*args), capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "of which pasted" in run.stdout
        trees.append({k: v[2] for k, v in every_file(out).items() if k.startswith("images/")})
    assert trees[0] == trees[1] and len(trees[0]) > 40
