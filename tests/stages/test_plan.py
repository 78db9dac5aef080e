"""Output names and seeds (augment/stages/plan.py): keyed by content, recipe and seed."""

from __future__ import annotations

from pathlib import Path

from augment.defaults import DEFAULT_MAX_PIXELS
from augment.stages.ingest import ingest
from augment.stages.plan import Fingerprints, Plan, job_seed, output_key
from tests.helpers import tiny_source

FP = Fingerprints(preprocess="p" * 16, recipe="r" * 16)


def test_variant_key_depends_on_source_recipe_seed_and_variant() -> None:
    base = output_key("a" * 64, FP, 0, 1)
    assert base == output_key("a" * 64, FP, 0, 1)
    assert base != output_key("b" * 64, FP, 0, 1)
    assert base != output_key("a" * 64, Fingerprints(FP.preprocess, "s" * 16), 0, 1)
    assert base != output_key("a" * 64, FP, 1, 1)
    assert base != output_key("a" * 64, FP, 0, 2)
    assert job_seed(0, "a" * 64, 1) != job_seed(0, "b" * 64, 1)


def test_original_key_follows_preprocessing_only() -> None:
    # Variant 0 is the preprocessed original: the augment part and the seed do not make it.
    base = output_key("a" * 64, FP, 0, 0)
    assert base == output_key("a" * 64, Fingerprints(FP.preprocess, "s" * 16), 5, 0)
    assert base != output_key("a" * 64, Fingerprints("q" * 16, FP.recipe), 0, 0)


def test_a_source_s_outputs_come_in_pieces_with_the_very_same_jobs(tmp_path: Path) -> None:
    """--times 100 on two sources: pieces of at most 32 outputs (each journaled when done,
    none held whole), the jobs those of the whole task, in order."""
    dataset = ingest(tiny_source(tmp_path / "src", ("cat",), 2), None, DEFAULT_MAX_PIXELS)
    split_of = {o.path: "train" for o in dataset.originals}
    plan = Plan(dataset.originals, split_of, {"cat": range(100)}, FP, 0, "png")
    whole = [job for task in plan.tasks() for job in task.outputs]
    pieces = list(plan.tasks(most=32))
    assert [len(task.outputs) for task in pieces] == [32, 32, 32, 4] * 2
    assert [job for task in pieces for job in task.outputs] == whole
    todo = {0: 1 << 5 | 1 << 40, 1: 1 << 99}  # what a rerun still has to make
    some = [job.path for task in plan.tasks(todo, most=32) for job in task.outputs]
    assert some == [whole[5].path, whole[40].path, whole[199].path]
