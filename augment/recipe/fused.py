"""The recipe's leading flips and affine, run as direct OpenCV moves on one buffer.

A recipe that starts with geometry (the default: HorizontalFlip, then Affine) pays
albumentations' per-transform machinery and a 3-channel warp for it. Here the leading run of
HorizontalFlip / VerticalFlip / Affine is drawn as albumentations draws it, then applied as
`cv2.flip` and one `cv2.warpAffine` per affine, and the rest of the recipe runs as
albumentations runs it.

What the manifest records does not change: every transform draws its parameters with its own
methods (`should_apply`, `get_params`, `update_transform_params`,
`get_params_dependent_on_data`), from the same seeded generators and in the same order as
`A.Compose.__call__`, so `applied_transforms` holds the same entries. The pixels do not change
either (`tests/recipe/test_fused.py` compares the two paths byte for byte):

- OpenCV's bilinear warp has a vectorised path for one and four channels but not for three, so
  a 3-channel image is widened to RGBA once, warped and narrowed back: the colour channels come
  out identical, for less (docs/performance.md has the figures).
- A flip stays an index move rather than being folded into the affine's matrix: folded, the
  warp's fixed-point source coordinates round differently for a few pixels of an image (by
  one level), which would change output bytes, and so every output's name, to save a
  flip that costs a few microseconds.

The fit (resize and pad) is not folded into the warp either: it is made once per source and
shared by the original and every variant, so a warp from the decoded image would cost each
variant what the warp from the fitted image costs, and the blurred pad would need a second warp
and a blend. Annotated sets do not take this path: their pipeline moves boxes and masks too.
"""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric

from augment.recipe.build import Recipe

__all__ = ["FusedPipeline", "fuse_geometry", "fused_pipeline"]

_FLIPS = (A.HorizontalFlip, A.VerticalFlip)
# Interpolations whose 4-channel warp gives exactly the 3-channel warp's colour channels.
_FOUR_CHANNEL_SAFE = frozenset({cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC})


class FusedPipeline:
    """An `A.Compose` whose leading flips/affine run as direct moves; called like it."""

    def __init__(self, compose: A.Compose, leading: int) -> None:
        self.compose = compose
        self.geometry = list(compose.transforms[:leading])
        self.rest = list(compose.transforms[leading:])

    def set_random_state(
        self, random_generator: np.random.Generator, py_random: random.Random
    ) -> None:
        self.compose.set_random_state(random_generator, py_random)

    def __call__(self, *, image: np.ndarray) -> dict[str, Any]:
        compose = self.compose
        applied: list[tuple[str, dict[str, Any]]] = []
        data: dict[str, Any] = {"image": image, "applied_transforms": applied}
        # Compose draws its own p first, even at p=1: drawn here too, so the stream matches.
        if not compose.py_random.random() < compose.p:
            return data
        moves: list[tuple[A.BasicTransform, dict[str, Any]]] = []
        for t in self.geometry:
            params = _draw(t, data)
            if params is not None:
                applied.append((t.__class__.__name__, params.copy()))
                moves.append((t, params))
        if moves:
            data["image"] = _move(image, moves)
        for t in self.rest:  # as Compose.__call__ runs them
            data = t(**data)
            if getattr(t, "params", None):
                applied.append((t.__class__.__name__, t.params.copy()))
        return data


def fused_pipeline(recipe: Recipe, label: str | None) -> A.Compose | FusedPipeline:
    """Class `label`'s pipeline (`Recipe.build_pipeline`), its leading geometry fused."""
    return fuse_geometry(recipe.build_pipeline(label))


def fuse_geometry(pipeline: A.Compose) -> A.Compose | FusedPipeline:
    """`pipeline` with its leading flips/affine run directly, or `pipeline` itself when it cannot be
    (not a plain image-only Compose, nothing to fuse, or a form the fused path does not keep:
    replay, an affine that changes the output size, a bounding box or keypoint processor)."""
    if type(pipeline) is not A.Compose or pipeline.processors or pipeline.strict:
        return pipeline
    if getattr(pipeline, "additional_targets", None):
        return pipeline
    leading = 0
    for t in pipeline.transforms:
        if not _fusable(t):
            break
        leading += 1
    if leading == 0:
        return pipeline
    return FusedPipeline(pipeline, leading)


def _fusable(t: object) -> bool:
    if type(t) not in (*_FLIPS, A.Affine):
        return False
    assert isinstance(t, A.BasicTransform)
    if t.replay_mode or t.deterministic:
        return False
    return not (isinstance(t, A.Affine) and t.fit_output)


def _draw(t: A.BasicTransform, data: dict[str, Any]) -> dict[str, Any] | None:
    """The parameters `t` draws for `data`, as BasicTransform.__call__ draws them (None: it
    does not apply); `t.params` is left as a call would leave it."""
    t.params = {}
    if not t.should_apply():
        return None
    params = t.get_params()
    params = t.update_transform_params(params=params, data=data)
    params.update(t.get_params_dependent_on_data(params=params, data=data))
    t.params = params
    return params


def _move(image: np.ndarray, moves: list[tuple[A.BasicTransform, dict[str, Any]]]) -> np.ndarray:
    """`image` flipped and warped as the drawn `moves` say, on one buffer (a new array)."""
    widen = image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    buffer, widened = image, False
    for t, params in moves:
        if isinstance(t, A.HorizontalFlip):
            buffer = cv2.flip(buffer, 1)
            continue
        if isinstance(t, A.VerticalFlip):
            buffer = cv2.flip(buffer, 0)
            continue
        assert isinstance(t, A.Affine)
        matrix = np.asarray(params["matrix"], dtype=np.float64)
        if is_identity(matrix):  # albumentations leaves the image as it is
            continue
        if widen and not widened and t.interpolation in _FOUR_CHANNEL_SAFE:
            buffer, widened = cv2.cvtColor(buffer, cv2.COLOR_RGB2RGBA), True
        buffer = _warp(buffer, matrix, t, channels=image.shape[2] if image.ndim == 3 else 1)
    if widened:
        return cv2.cvtColor(buffer, cv2.COLOR_RGBA2RGB)
    return buffer if buffer is not image else image.copy()


def is_identity(matrix: np.ndarray) -> bool:
    """albumentations' `is_identity_matrix` (`np.allclose(matrix, np.eye(3))`, rtol 1e-05,
    atol 1e-08, NaN never close) on a 3 x 3 matrix, in plain Python: numpy's per-call overhead
    on nine numbers costs more than the check (docs/performance.md)."""
    for i, row in enumerate(matrix.tolist()):
        for j, value in enumerate(row):
            target = 1.0 if i == j else 0.0
            if not abs(value - target) <= 1e-08 + 1e-05 * abs(target):
                return False
    return True


def _warp(buffer: np.ndarray, matrix: np.ndarray, affine: A.Affine, channels: int) -> np.ndarray:
    """Affine.apply's warp (fgeometric.warp_affine), on a buffer that may carry a fourth
    channel: the fill is extended for the image's own channels, as albumentations extends it."""
    height, width = buffer.shape[:2]
    out = cv2.warpAffine(
        buffer,
        matrix[:2, :],
        (width, height),
        flags=affine.interpolation,
        borderMode=affine.border_mode,
        borderValue=fgeometric.extend_value(affine.fill, channels),
    )
    if out.ndim < buffer.ndim:  # OpenCV drops a single channel axis
        out = out[..., np.newaxis]
    return out
