"""The project's own albumentations-compatible transforms, for what albumentations lacks or
does too slowly.

They follow albumentations 2.0.x's contract, so they sit in an `A.Compose` next to its own
transforms and a recipe can name them like any other:
- arguments are validated at construction by a pydantic `InitSchema`, so a bad recipe fails
  when it is loaded, with the argument's name in the message;
- all randomness is drawn in `get_params` from `self.random_generator`, which the Compose seeds;
  `apply` is a pure function of the image and the drawn params;
- the drawn params are a few JSON scalars (a noise level and a 32-bit noise seed, never a noise
  array), so they can be written to the manifest as the applied parameters and replayed;
- defining a subclass registers it with albumentations' serialisation (by its full name,
  `augment.transforms.<Name>`: see `_StableName`), so `A.to_dict`/`A.from_dict` round-trip
  once this module has been imported.

Noise is generated from the raw output of a per-call `SFC64` bit generator seeded with the drawn
noise seed. Raw bit-generator streams are fixed by NumPy's compatibility policy, unlike the
distribution methods of `Generator`, so a recorded seed replays to the same pixels across NumPy
versions.
"""

from __future__ import annotations

import functools
import os
from statistics import NormalDist
from typing import Annotated, Any

import cv2
import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field

# Set before albumentations is first imported: its import otherwise checks PyPI for a newer
# version, a network call an offline batch tool must not make.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from albumentations.core.transforms_interface import (
    BaseTransformInitSchema,
    ImageOnlyTransform,
)

__all__ = [
    "OWN_TRANSFORMS",
    "FastGaussianNoise",
    "SaltAndPepperNoise",
    "gaussian_noise",
    "salt_and_pepper",
]

_SEED_BOUND = 2**32  # noise seeds fit any JSON reader, including JavaScript's doubles
# Each noise kind mixes its own constant into the seed. albumentations 2.0.8's
# Compose(seed=s) gives every child transform a generator seeded with the same s, so two of our
# transforms in one Compose draw the same noise_seed; without this their patterns would coincide.
_GAUSSIAN_STREAM = 0x6A55
_SALT_PEPPER_STREAM = 0x5A17
_TABLE_BITS = 16  # one uint16 of random bits picks one normal quantile per pixel


# ---------------------------------------------------------------------------------------------
# Pure functions: the image and the drawn params in, a new image out.
# ---------------------------------------------------------------------------------------------


@functools.cache
def _normal_table() -> np.ndarray:
    """The 65,536 mid-point quantiles of N(0, 1), rescaled to unit variance, as float32.

    Why a table: numpy's ziggurat normals cost about as much as A.GaussNoise as a whole, while
    16 random bits are nearly free. Indexing this table with uniform 16-bit integers is
    inverse-CDF sampling: each pixel's noise is an independent draw from a 65,536-level
    discretised normal (tails reach +-4.3 sigma; the mass beyond that in a true normal is 2e-5).
    The step between levels is far below the 1-level rounding of a uint8 result, so the output
    is indistinguishable from rounded Gaussian noise. The table is built symmetric, so its mean
    is exactly 0, and rescaled so its variance is exactly 1.
    """
    size = 1 << _TABLE_BITS
    dist = NormalDist()
    upper = np.array([dist.inv_cdf((k + 0.5) / size) for k in range(size // 2, size)])
    table = np.concatenate([-upper[::-1], upper])
    table /= np.sqrt(np.mean(table**2))
    table32 = table.astype(np.float32)
    table32.setflags(write=False)  # shared by every call; nothing may scribble on it
    return table32


def _random_bits(entropy: list[int], count: int, bits: int) -> np.ndarray:
    """`count` uniform unsigned integers of `bits` (16 or 32) bits from an SFC64 stream."""
    per_word = 64 // bits
    raw = np.random.SFC64(entropy).random_raw((count + per_word - 1) // per_word)
    # Viewing the 64-bit words as little-endian pins the values on any platform (no copy on
    # the little-endian machines this runs on).
    return raw.astype("<u8", copy=False).view(f"<u{bits // 8}")[:count]


def _check_uint8(image: np.ndarray, name: str) -> None:
    if image.dtype != np.uint8:
        raise TypeError(f"{name} works on uint8 images, got dtype {image.dtype}")


def gaussian_noise(
    image: np.ndarray, sigma: float, seed: int, per_channel: bool = True, index: int = 0
) -> np.ndarray:
    """image + N(0, sigma^2) noise in pixel units, rounded and clipped to uint8.

    `per_channel=False` adds the same noise to every channel of a pixel (luminance noise).
    `index` selects an independent pattern for the same seed (the images of one batch).
    """
    _check_uint8(image, "gaussian_noise")
    if sigma == 0:
        return image.copy()
    shared = not per_channel and image.ndim == 3 and image.shape[2] > 1
    noise_shape = image.shape[:2] if shared else image.shape
    count = int(np.prod(noise_shape))
    bits = _random_bits([seed, _GAUSSIAN_STREAM, index], count, _TABLE_BITS)
    # mode="wrap" skips take's bounds check; 16-bit indices are always inside the table.
    noise = np.take(_normal_table(), bits.reshape(noise_shape), mode="wrap")
    if shared:
        noise = cv2.merge([noise] * image.shape[2])
    # One cv2 pass scales the unit noise by sigma, adds it in float, rounds and saturates to
    # uint8: no float64 copies of the image as numpy arithmetic would make.
    out = cv2.addWeighted(image, 1.0, noise, float(sigma), 0.0, dtype=cv2.CV_8U)
    return out.reshape(image.shape)


def salt_and_pepper(
    image: np.ndarray, amount: float, salt_vs_pepper: float, seed: int, index: int = 0
) -> np.ndarray:
    """Set a fraction `amount` of pixels to white (salt) or black (pepper), all channels alike.

    Each pixel gets one uniform 32-bit number u: u < amount means noisy, and among those
    u < amount * salt_vs_pepper means salt. 32 bits keep even tiny amounts exact to ~1e-9.
    `index` selects an independent pattern for the same seed (the images of one batch).
    """
    _check_uint8(image, "salt_and_pepper")
    pixels = image.shape[0] * image.shape[1]
    u = _random_bits([seed, _SALT_PEPPER_STREAM, index], pixels, 32)
    noisy_below = int(amount * 2**32)
    salt_below = int(amount * salt_vs_pepper * 2**32)
    # Writing only the chosen pixels through flat indices is several times faster than boolean
    # masks over the whole image, since only a few percent of pixels change.
    noisy = np.flatnonzero(u < noisy_below)
    values = np.where(u[noisy] < salt_below, np.uint8(255), np.uint8(0))
    out = image.copy()
    if out.ndim == 2:
        out.reshape(pixels)[noisy] = values
    else:
        out.reshape(pixels, -1)[noisy] = values[:, None]
    return out


# ---------------------------------------------------------------------------------------------
# Argument validation shared by the InitSchemas.
# ---------------------------------------------------------------------------------------------


def _scalar_to_range(value: Any) -> Any:
    # `sigma: 10` in a recipe means exactly 10, as albumentations reads scalars for its ranges.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value, value)
    return value


def _range_within(low: float, high: float) -> Any:
    def check(value: tuple[float, float]) -> tuple[float, float]:
        if not low <= value[0] <= value[1] <= high:
            raise ValueError(f"expected (min, max) with {low} <= min <= max <= {high}, got {value}")
        return value

    return check


def _drawn_seed(generator: np.random.Generator) -> int:
    return int(generator.integers(0, _SEED_BOUND))


class _StableName:
    """Registers a transform under `augment.transforms.<Name>`, the module these were first
    written in: albumentations names a transform by its full class name in `to_dict`, and that
    dict is part of the recipe fingerprint, so moving the module must not rename every output
    (nor break a recipe saved with the old name)."""

    @classmethod
    def get_class_fullname(cls) -> str:
        return f"augment.transforms.{cls.__name__}"


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


class FastGaussianNoise(_StableName, ImageOnlyTransform):
    """Additive zero-mean Gaussian noise, std drawn uniformly from `sigma` (0..255 pixel units).

    About 2.5x faster than `A.GaussNoise` on a 500x375 RGB image (0.7 ms against 1.8 ms in
    `benchmarks/bench.py`; see `gaussian_noise` for why).

    Args:
        sigma: range of the noise standard deviation in pixel values, or one number.
        per_channel: independent noise per channel (colour noise); False adds the same noise
            to all channels of a pixel (luminance noise).
        p: probability of applying the transform.

    Applied params: `sigma` (float) and `noise_seed` (int), which reproduce the pixels exactly.

    Targets: image, images, volume. Image types: uint8.
    """

    class InitSchema(BaseTransformInitSchema):
        sigma: Annotated[
            tuple[float, float],
            BeforeValidator(_scalar_to_range),
            AfterValidator(_range_within(0, 255)),
        ]
        per_channel: bool

    def __init__(
        self,
        sigma: tuple[float, float] | float = (5, 15),
        per_channel: bool = True,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        # InitSchema has already turned a scalar into a (min, max) tuple.
        self.sigma: tuple[float, float] = sigma  # type: ignore[assignment]
        self.per_channel = per_channel

    def get_params(self) -> dict[str, Any]:
        return {
            "sigma": float(self.random_generator.uniform(*self.sigma)),
            "noise_seed": _drawn_seed(self.random_generator),
        }

    def apply(self, img: np.ndarray, sigma: float, noise_seed: int, **params: Any) -> np.ndarray:
        return gaussian_noise(img, sigma, noise_seed, per_channel=self.per_channel)

    def apply_to_images(
        self, images: np.ndarray, sigma: float, noise_seed: int, **params: Any
    ) -> np.ndarray:
        # Each image of a batch (or slice of a volume) gets its own noise from (seed, index);
        # the base class would repeat one noise pattern on every image.
        return np.stack(
            [
                gaussian_noise(image, sigma, noise_seed, self.per_channel, index=i)
                for i, image in enumerate(images)
            ]
        )

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma", "per_channel")


class SaltAndPepperNoise(_StableName, ImageOnlyTransform):
    """Set a fraction of pixels, drawn uniformly from `amount`, to white or black.

    About 5x faster than `A.SaltAndPepper`. All channels of a chosen pixel change together.

    Args:
        amount: range of the fraction of pixels to change (0..1), or one number.
        salt_vs_pepper: share of the changed pixels that become white (0..1).
        p: probability of applying the transform.

    Applied params: `amount` (float) and `noise_seed` (int).

    Targets: image, images, volume. Image types: uint8.
    """

    class InitSchema(BaseTransformInitSchema):
        amount: Annotated[
            tuple[float, float],
            BeforeValidator(_scalar_to_range),
            AfterValidator(_range_within(0, 1)),
        ]
        salt_vs_pepper: float = Field(ge=0, le=1)

    def __init__(
        self,
        amount: tuple[float, float] | float = (0.01, 0.05),
        salt_vs_pepper: float = 0.5,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        # InitSchema has already turned a scalar into a (min, max) tuple.
        self.amount: tuple[float, float] = amount  # type: ignore[assignment]
        self.salt_vs_pepper = salt_vs_pepper

    def get_params(self) -> dict[str, Any]:
        return {
            "amount": float(self.random_generator.uniform(*self.amount)),
            "noise_seed": _drawn_seed(self.random_generator),
        }

    def apply(self, img: np.ndarray, amount: float, noise_seed: int, **params: Any) -> np.ndarray:
        return salt_and_pepper(img, amount, self.salt_vs_pepper, noise_seed)

    def apply_to_images(
        self, images: np.ndarray, amount: float, noise_seed: int, **params: Any
    ) -> np.ndarray:
        # As in FastGaussianNoise: distinct noise per image of a batch.
        return np.stack(
            [
                salt_and_pepper(image, amount, self.salt_vs_pepper, noise_seed, index=i)
                for i, image in enumerate(images)
            ]
        )

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("amount", "salt_vs_pepper")


# The names a recipe may use for the project's transforms, looked up next to albumentations'.
OWN_TRANSFORMS: dict[str, type[ImageOnlyTransform]] = {
    "FastGaussianNoise": FastGaussianNoise,
    "SaltAndPepperNoise": SaltAndPepperNoise,
}
