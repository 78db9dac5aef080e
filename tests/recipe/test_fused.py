"""The fused leading geometry (recipe/fused.py) against the plain albumentations pipeline: the
same drawn parameters in the manifest and the same pixels, compared value by value on real
photos preprocessed as a run preprocesses them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
from albumentations.augmentations.geometric import functional as fgeometric

from augment.imaging.codec import decode
from augment.imaging.threads import one_cv2_thread
from augment.recipe.applied import applied_params
from augment.recipe.build import Recipe, load_recipe, parse_recipe, seed_pipeline
from augment.recipe.fused import _FOUR_CHANNEL_SAFE, FusedPipeline, fuse_geometry, is_identity
from augment.recipe.preprocess import apply_preprocess
from augment.stages.plan import Fingerprints
from augment.stages.worker import RunContext, Worker
from tests.helpers import TEXTURES

# Every fused case at once: a vertical flip first, an affine with a coloured constant fill and
# cubic interpolation, a flip after the affine, then a transform that is not fused.
MIXED_GEOMETRY = """\
preprocess: {size: [96, 80], fit: pad, pad_mode: edge}
augment:
  - VerticalFlip: {p: 0.5}
  - Affine:
      rotate: [-30, 30]
      shear: [-10, 10]
      scale: [0.8, 1.2]
      border_mode: constant
      fill: [10, 200, 30]
      interpolation: cubic
      p: 0.8
  - HorizontalFlip: {p: 0.5}
  - GaussNoise: {p: 0.5}
"""


@pytest.fixture(autouse=True)
def _one_cv2_thread() -> Iterator[None]:
    # OpenCV's thread pool, once started in the test process, hangs the workers that later
    # tests fork from it (see augment/imaging/threads.py).
    with one_cv2_thread():
        yield


def _photos(recipe: Recipe) -> list[np.ndarray]:
    """Three sample photos, decoded and preprocessed as a run does it for `recipe`."""
    out = []
    for path in sorted(TEXTURES.rglob("*.jpg"))[:3]:
        needed = recipe.preprocess.needed_source_size
        decoded = decode(path.read_bytes(), recipe.background, needed=needed)
        out.append(apply_preprocess(decoded.pixels, recipe.preprocess))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "aggressive", "mixed"])
def test_fused_geometry_draws_and_paints_what_albumentations_does(name: str) -> None:
    recipe = parse_recipe(MIXED_GEOMETRY, "mixed", "mixed.yaml") if name == "mixed" else None
    recipe = recipe or load_recipe(name)
    plain, fused = recipe.build_pipeline(), fuse_geometry(recipe.build_pipeline())
    assert isinstance(fused, FusedPipeline)
    applied_names: set[str] = set()
    for photo in _photos(recipe):
        for seed in range(60):
            seed_pipeline(plain, seed)
            seed_pipeline(fused, seed)
            want = plain(image=photo.copy())
            got = fused(image=photo.copy())
            assert applied_params(got["applied_transforms"]) == applied_params(
                want["applied_transforms"]
            ), seed
            applied_names |= {n for n, _ in want["applied_transforms"]}
            assert got["image"].dtype == np.uint8 and got["image"].flags.c_contiguous
            np.testing.assert_array_equal(got["image"], want["image"], err_msg=f"seed {seed}")
    # The seeds cover the fused transforms, applied and not.
    assert {"Affine", "HorizontalFlip"} <= applied_names


def test_the_identity_check_is_albumentations_own() -> None:
    rng = np.random.default_rng(0)
    eye = np.eye(3)
    cases = [eye, eye.copy() * np.nan, eye + np.inf]
    for scale in (1e-3, 1e-5, 2e-6, 1e-7, 1e-8, 1e-9, 0.0):
        for _ in range(200):
            cases.append(eye + rng.normal(0, scale, (3, 3)))
    for matrix in cases:
        assert is_identity(matrix) == fgeometric.is_identity_matrix(matrix), matrix
    assert any(is_identity(m) for m in cases) and not all(is_identity(m) for m in cases)


@pytest.mark.parametrize("interpolation", sorted(_FOUR_CHANNEL_SAFE))
def test_a_warp_on_four_channels_gives_the_three_channel_warp(interpolation: int) -> None:
    # What the widened warp relies on; an OpenCV whose paths disagree fails here.
    photo = _photos(load_recipe("default"))[1]
    rng = np.random.default_rng(interpolation)
    for _ in range(20):
        matrix = cv2.getRotationMatrix2D(
            (111.5, 111.5), rng.uniform(-30, 30), rng.uniform(0.8, 1.2)
        )
        for border in (cv2.BORDER_REFLECT_101, cv2.BORDER_CONSTANT, cv2.BORDER_REPLICATE):
            args = ((224, 224),)
            kwargs = {"flags": interpolation, "borderMode": border, "borderValue": (10, 200, 30)}
            plain = cv2.warpAffine(photo, matrix, *args, **kwargs)
            wide = cv2.warpAffine(cv2.cvtColor(photo, cv2.COLOR_RGB2RGBA), matrix, *args, **kwargs)
            np.testing.assert_array_equal(cv2.cvtColor(wide, cv2.COLOR_RGBA2RGB), plain)


def test_the_input_image_is_left_alone() -> None:
    recipe = load_recipe("default")
    fused = fuse_geometry(recipe.build_pipeline())
    photo = _photos(recipe)[0]
    before = photo.copy()
    for seed in range(20):
        seed_pipeline(fused, seed)
        fused(image=photo)
    np.testing.assert_array_equal(photo, before)


@pytest.mark.parametrize(
    "transforms",
    [
        [A.RandomBrightnessContrast(p=1), A.HorizontalFlip(p=1)],  # no leading geometry
        [A.Affine(rotate=(-10, 10), fit_output=True, p=1)],  # changes the output size
    ],
)
def test_pipelines_the_fused_path_does_not_keep_stay_as_they_are(transforms: list) -> None:
    compose = A.Compose(transforms)
    assert fuse_geometry(compose) is compose


def test_a_pipeline_that_moves_boxes_stays_as_it_is() -> None:
    compose = A.Compose([A.HorizontalFlip(p=1)], bbox_params=A.BboxParams(format="yolo"))
    assert fuse_geometry(compose) is compose


def test_the_worker_runs_the_default_recipe_fused(tmp_path: Path) -> None:
    ctx = RunContext(
        src_root=TEXTURES,
        out=tmp_path,
        recipe=load_recipe("default"),
        fingerprints=Fingerprints(recipe="r", preprocess="p"),
        output_format="jpg",
        quality=90,
    )
    pipeline, removed = Worker(ctx).pipeline("brick")
    assert isinstance(pipeline, FusedPipeline) and removed == []
