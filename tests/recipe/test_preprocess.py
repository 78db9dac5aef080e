"""Preprocess: every fit and pad mode gives the exact size, and each pad looks as documented."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

from augment.recipe.preprocess import FIT_MODES, PAD_MODES, Preprocess, apply_preprocess

LANDSCAPE = data.chelsea()  # 300 x 451
SQUARE = data.astronaut()  # 512 x 512
PORTRAIT = np.ascontiguousarray(np.rot90(data.coffee()))  # 600 x 400
PHOTOS = {"landscape": LANDSCAPE, "square": SQUARE, "portrait": PORTRAIT}
TARGETS = [(224, 224), (320, 240), (200, 300)]  # (width, height)
MAGENTA = (255, 0, 255)  # a pad colour none of the photos' edges has


def fitted_geometry(image: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """(fit_w, fit_h, left, top) of an aspect-preserving fit, computed independently."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    fit_w, fit_h = max(1, round(w * scale)), max(1, round(h * scale))
    return fit_w, fit_h, (width - fit_w) // 2, (height - fit_h) // 2


def fitted(image: np.ndarray, width: int, height: int) -> np.ndarray:
    fit_w, fit_h, _, _ = fitted_geometry(image, width, height)
    return cv2.resize(image, (fit_w, fit_h), interpolation=cv2.INTER_AREA)


def pad_strips(out: np.ndarray, image: np.ndarray) -> list[np.ndarray]:
    """The padded border regions of a `pad` output (two strips, or none if nothing was padded)."""
    height, width = out.shape[:2]
    fit_w, fit_h, left, top = fitted_geometry(image, width, height)
    strips = [
        out[:top],
        out[top + fit_h :],
        out[top : top + fit_h, :left],
        out[top : top + fit_h, left + fit_w :],
    ]
    return [s for s in strips if s.size]


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("size", TARGETS)
def test_every_fit_and_pad_mode_gives_the_exact_size(
    photo: str, fit: str, pad_mode: str, size: tuple[int, int]
) -> None:
    width, height = size
    spec = Preprocess(width=width, height=height, fit=fit, pad_mode=pad_mode)  # type: ignore[arg-type]
    out = apply_preprocess(PHOTOS[photo], spec)
    assert out.shape == (height, width, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


@pytest.mark.parametrize("photo", PHOTOS)
def test_pad_keeps_the_whole_image_centred_and_fills_constant_colour(photo: str) -> None:
    image = PHOTOS[photo]
    out = apply_preprocess(image, Preprocess(320, 240, pad_color=MAGENTA))
    fit_w, fit_h, left, top = fitted_geometry(image, 320, 240)
    np.testing.assert_array_equal(
        out[top : top + fit_h, left : left + fit_w], fitted(image, 320, 240)
    )
    strips = pad_strips(out, image)
    assert strips, "every photo here has a different aspect ratio from 320x240"
    for strip in strips:
        assert (strip.reshape(-1, 3) == MAGENTA).all()


def test_pad_splits_odd_padding_with_the_extra_pixel_after() -> None:
    out = apply_preprocess(SQUARE, Preprocess(101, 100, pad_color=MAGENTA))  # 100x100 + 1 column
    assert (out[:, -1] == MAGENTA).all()
    assert not (out[:, 0] == MAGENTA).all(axis=-1).any()


@pytest.mark.parametrize("photo", ["landscape", "portrait"])
def test_reflect_mirrors_the_image_edge_without_repeating_it(photo: str) -> None:
    image = PHOTOS[photo]
    out = apply_preprocess(image, Preprocess(224, 224, pad_mode="reflect"))
    fit_w, fit_h, left, top = fitted_geometry(image, 224, 224)
    if top:  # landscape: padded above and below
        above = out[:top]
        assert top < fit_h
        np.testing.assert_array_equal(above[::-1], out[top + 1 : 2 * top + 1])
    else:  # portrait: padded left and right
        beside = out[:, :left]
        assert left < fit_w
        np.testing.assert_array_equal(beside[:, ::-1], out[:, left + 1 : 2 * left + 1])


@pytest.mark.parametrize("photo", ["landscape", "portrait"])
def test_edge_replicates_the_border_pixel(photo: str) -> None:
    image = PHOTOS[photo]
    out = apply_preprocess(image, Preprocess(224, 224, pad_mode="edge"))
    fit_w, fit_h, left, top = fitted_geometry(image, 224, 224)
    if top:
        assert (out[:top] == out[top]).all()
        assert (out[top + fit_h :] == out[top + fit_h - 1]).all()
    else:
        assert (out[:, :left] == out[:, left : left + 1]).all()
        assert (out[:, left + fit_w :] == out[:, left + fit_w - 1 : left + fit_w]).all()


def test_wrap_continues_with_the_opposite_edge() -> None:
    out = apply_preprocess(LANDSCAPE, Preprocess(224, 224, pad_mode="wrap"))
    _, fit_h, _, top = fitted_geometry(LANDSCAPE, 224, 224)
    np.testing.assert_array_equal(out[:top], out[fit_h : fit_h + top])


@pytest.mark.parametrize("photo", ["landscape", "portrait"])
def test_blur_pads_with_a_smooth_background_behind_the_sharp_image(photo: str) -> None:
    image = PHOTOS[photo]
    size = (320, 320)
    blurred = apply_preprocess(image, Preprocess(*size, pad_mode="blur"))
    constant = apply_preprocess(image, Preprocess(*size, pad_mode="constant"))
    reflected = apply_preprocess(image, Preprocess(*size, pad_mode="reflect"))
    fit_w, fit_h, left, top = fitted_geometry(image, *size)
    centre = np.s_[top : top + fit_h, left : left + fit_w]
    np.testing.assert_array_equal(blurred[centre], fitted(image, *size))

    def roughness(region: np.ndarray) -> float:
        """Mean absolute difference between neighbouring pixels: detail, not colour."""
        r = region.astype(np.int16)
        return float(np.abs(np.diff(r, axis=0)).mean() + np.abs(np.diff(r, axis=1)).mean())

    for blur_strip, constant_strip, reflect_strip in zip(
        pad_strips(blurred, image),
        pad_strips(constant, image),
        pad_strips(reflected, image),
        strict=True,
    ):
        assert np.abs(blur_strip.astype(int) - constant_strip).mean() > 20  # not black
        assert np.abs(blur_strip.astype(int) - reflect_strip).mean() > 5  # not a mirror
        assert roughness(blur_strip) < 1.5
        assert roughness(reflect_strip) > 3 * roughness(blur_strip)
        # A blurred picture, not a flat fill: its colour still varies across the strip.
        assert blur_strip.reshape(-1, 3).std(0).max() > 2


@pytest.mark.parametrize("photo", PHOTOS)
def test_crop_covers_the_frame_with_no_padding_and_the_same_aspect(photo: str) -> None:
    image = PHOTOS[photo]
    width, height = 320, 240
    out = apply_preprocess(image, Preprocess(width, height, fit="crop", pad_color=MAGENTA))
    # Reference: scale to cover, then centre-crop; the implementation crops first, so allow
    # resampling differences but not a shift, stretch or border.
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    cover_w, cover_h = max(width, round(w * scale)), max(height, round(h * scale))
    covered = cv2.resize(image, (cover_w, cover_h), interpolation=cv2.INTER_AREA)
    x0, y0 = (cover_w - width) // 2, (cover_h - height) // 2
    reference = covered[y0 : y0 + height, x0 : x0 + width]
    assert np.abs(out.astype(int) - reference).mean() < 3
    for edge in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert not (edge == MAGENTA).all(axis=-1).all()
        assert edge.std() > 0  # real picture content reaches every border


@pytest.mark.parametrize("photo", PHOTOS)
def test_stretch_is_a_plain_resize(photo: str) -> None:
    image = PHOTOS[photo]
    out = apply_preprocess(image, Preprocess(200, 100, fit="stretch"))
    np.testing.assert_array_equal(out, cv2.resize(image, (200, 100), interpolation=cv2.INTER_AREA))
    out = apply_preprocess(image, Preprocess(200, 100, fit="stretch", interpolation="cubic"))
    np.testing.assert_array_equal(out, cv2.resize(image, (200, 100), interpolation=cv2.INTER_CUBIC))


def test_area_interpolation_enlarges_bilinearly_instead_of_blocky() -> None:
    small = cv2.resize(LANDSCAPE, (60, 40), interpolation=cv2.INTER_AREA)
    out = apply_preprocess(small, Preprocess(240, 160, fit="stretch"))
    np.testing.assert_array_equal(
        out, cv2.resize(small, (240, 160), interpolation=cv2.INTER_LINEAR)
    )
    blocky = cv2.resize(small, (240, 160), interpolation=cv2.INTER_NEAREST)
    assert not np.array_equal(out, blocky)


@pytest.mark.parametrize(
    "shape_slice",
    [np.s_[100:101, 200:201], np.s_[100:101, :], np.s_[:, 200:201], np.s_[100:102, 200:203]],
    ids=["1x1", "1xN", "Nx1", "2x3"],
)
@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_tiny_images_are_handled(shape_slice: tuple[slice, slice], fit: str, pad_mode: str) -> None:
    tiny = np.ascontiguousarray(LANDSCAPE[shape_slice])
    out = apply_preprocess(tiny, Preprocess(64, 48, fit=fit, pad_mode=pad_mode))  # type: ignore[arg-type]
    assert out.shape == (48, 64, 3)
    assert out.flags.c_contiguous


def test_reflect_on_a_one_pixel_wide_image_falls_back_to_edge() -> None:
    column = np.ascontiguousarray(LANDSCAPE[:, 200:201])  # 300 x 1: fitted to 1 x 48
    reflected = apply_preprocess(column, Preprocess(64, 48, pad_mode="reflect"))
    edged = apply_preprocess(column, Preprocess(64, 48, pad_mode="edge"))
    np.testing.assert_array_equal(reflected, edged)


def test_already_target_size_and_no_size_return_an_equal_copy() -> None:
    for spec in (Preprocess(451, 300, fit="crop"), Preprocess()):
        out = apply_preprocess(LANDSCAPE, spec)
        np.testing.assert_array_equal(out, LANDSCAPE)
        assert not np.shares_memory(out, LANDSCAPE)


def test_non_contiguous_input_is_accepted() -> None:
    view = LANDSCAPE[::2, ::2]
    out = apply_preprocess(view, Preprocess(100, 100))
    assert out.shape == (100, 100, 3)
    assert apply_preprocess(view, Preprocess()).flags.c_contiguous


@pytest.mark.parametrize(
    "image",
    [LANDSCAPE[..., 0], LANDSCAPE.astype(np.float32), np.dstack([LANDSCAPE, LANDSCAPE[..., :1]])],
    ids=["grey", "float", "rgba"],
)
def test_rejects_anything_but_rgb_uint8(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        apply_preprocess(image, Preprocess(64, 64))


def test_from_dict_and_to_dict_round_trip_through_json() -> None:
    spec = Preprocess.from_dict(
        {
            "size": [320, 240],
            "fit": "pad",
            "pad_mode": "blur",
            "pad_color": [10, 20, 30],
            "interpolation": "lanczos",
        }
    )
    assert spec == Preprocess(320, 240, "pad", "blur", (10, 20, 30), "lanczos")
    as_json = json.dumps(spec.to_dict())
    assert Preprocess.from_dict(json.loads(as_json)) == spec
    assert Preprocess.from_dict(Preprocess().to_dict()) == Preprocess()


def test_spellings_of_the_same_spec_give_the_same_canonical_dict() -> None:
    forms = [
        {"size": 224},
        {"size": [224, 224]},
        {"width": 224, "height": 224, "pad_color": 0},
        {"width": 224, "height": 224, "pad_color": "#000000", "fit": "pad"},
    ]
    dicts = [Preprocess.from_dict(f).to_dict() for f in forms]
    assert all(d == dicts[0] for d in dicts)
    assert Preprocess.from_dict(None) == Preprocess.from_dict({}) == Preprocess()


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"sise": 224}, "sise"),
        ({"size": 224, "colour": [0, 0, 0]}, "colour"),
        ({"fit": "fill"}, "fit"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"interpolation": "bicubic"}, "interpolation"),
        ({"width": 224}, "height"),
        ({"width": 0, "height": 10}, "width"),
        ({"width": "224", "height": 224}, "width"),
        ({"width": 224, "height": True}, "height"),
        ({"width": 22.5, "height": 224}, "width"),
        ({"size": [224, 224, 3]}, "size"),
        ({"size": -5}, "size"),
        ({"size": 224, "width": 224}, "size"),
        ({"pad_color": [300, 0, 0]}, "pad_color"),
        ({"pad_color": [0, 0]}, "pad_color"),
        ({"pad_color": "red"}, "pad_color"),
    ],
)
def test_from_dict_rejects_bad_input_naming_the_key(bad: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Preprocess.from_dict(bad)


def test_constructing_in_code_is_validated_too() -> None:
    with pytest.raises(ValueError, match="fit"):
        Preprocess(224, 224, fit="zoom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pad_color"):
        Preprocess(224, 224, pad_color=(0, 0, 256))
    # numpy integers are accepted and stored as plain ints, so to_dict stays JSON-able
    spec = Preprocess(np.int64(224), np.int64(100), pad_color=(np.uint8(1), 2, 3))  # type: ignore[arg-type]
    json.dumps(spec.to_dict())
