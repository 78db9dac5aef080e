"""The worker (augment/stages/worker.py): one pipeline per set of transforms the classes may
use, with each class's draws and policy record its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from augment.recipe.build import parse_recipe, seed_pipeline
from augment.recipe.fused import fused_pipeline
from augment.stages.plan import Fingerprints
from augment.stages.worker import RunContext, Worker

POLICY = """\
description: a per-class policy, for tests
preprocess: {size: [32, 24], fit: stretch}
augment:
  - HorizontalFlip: {p: 0.5, except_classes: ["6", "9"]}
  - Affine: {rotate: [-20, 20], p: 0.8}
  - RandomBrightnessContrast: {p: 0.6, only_classes: [a]}
"""


def test_classes_that_may_use_the_same_transforms_share_a_pipeline_and_draw_alike(
    tmp_path: Path,
) -> None:
    recipe = parse_recipe(POLICY, "policy", "policy.yaml")
    ctx = RunContext(tmp_path, tmp_path / "out", recipe, Fingerprints("p", "r"), "png", 95)
    worker = Worker(ctx)
    six, nine, a, b = (worker.pipeline(label)[0] for label in ("6", "9", "a", "b"))
    assert six is nine and a is not six and b is not six and b is not a
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for label in ("6", "9", "a", "b", "6"):
        for seed in (1, 2, 3):
            pixels, params = worker.augment(image, label, seed)
            own = fused_pipeline(recipe, label)  # a fresh pipeline of the class's own
            seed_pipeline(own, seed)
            assert np.array_equal(pixels, own(image=image.copy())["image"]), (label, seed)
            removed = recipe.removed_for(label)  # the record says its own class's
            policy = [p for p in params if p["transform"] == "ClassPolicy"]
            entry = {"transform": "ClassPolicy", "label": label, "removed": removed}
            assert policy == ([entry] if removed else [])
