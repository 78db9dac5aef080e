"""Output names and seeds (augment/stages/plan.py): keyed by content, recipe and seed."""

from __future__ import annotations

from augment.stages.plan import Fingerprints, job_seed, output_key

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
