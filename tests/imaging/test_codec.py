"""The fast JPEG path in imageio: the same pixels and the same rules as Pillow, only faster.

Every case compares `decode` with what Pillow itself makes of the same bytes (upright, RGB),
so a fast path that dropped a rule or decoded differently fails here.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageOps
from skimage import data as skdata

from augment.imaging.codec import UnreadableImage, decode, encode
from augment.recipe.preprocess import Preprocess, apply_preprocess
from tests.helpers import TEXTURES


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def jpeg(pixels: np.ndarray, mode: str = "RGB", **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


PHOTO = skdata.chelsea()  # 300 x 451 RGB: odd width exercises chroma edge handling


@pytest.mark.parametrize(
    ("mode", "save"),
    [
        ("RGB", {}),  # 4:2:0 baseline, the common case
        ("RGB", {"subsampling": 0}),  # 4:4:4
        ("RGB", {"subsampling": 1}),  # 4:2:2
        ("RGB", {"progressive": True}),
        ("L", {}),  # grayscale: replicated into three channels
        ("CMYK", {}),  # not plain: Pillow converts it
    ],
)
def test_jpeg_pixels_match_pillow(mode: str, save: dict[str, object]) -> None:
    data = jpeg(PHOTO, mode, **save)
    decoded = decode(data)
    assert decoded.source_format == "JPEG"
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.flags.c_contiguous
    assert np.array_equal(decoded.pixels, pillow_rgb(data))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_honoured(orientation: int) -> None:
    img = Image.fromarray(PHOTO)
    exif = img.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "augment test camera"  # a second tag, so the parser walks the IFD
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=90)
    data = buf.getvalue()
    pixels = decode(data).pixels
    upright = pillow_rgb(data)
    assert np.array_equal(pixels, upright)
    rotated = orientation in (6, 8)
    assert pixels.shape[:2] == (PHOTO.shape[1::-1] if rotated else PHOTO.shape[:2])


def test_xmp_orientation_is_honoured() -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF>'
        b"</x:xmpmeta>"
    )
    data = jpeg(PHOTO, xmp=xmp)
    pixels = decode(data).pixels
    assert np.array_equal(pixels, pillow_rgb(data))
    assert pixels.shape[:2] == PHOTO.shape[1::-1]


def test_truncated_jpeg_is_unreadable_not_grey() -> None:
    data = jpeg(PHOTO)
    with pytest.raises(UnreadableImage):
        decode(data[: len(data) // 2])


def test_pixel_limit_holds_for_jpeg() -> None:
    data = jpeg(PHOTO)
    with pytest.raises(UnreadableImage, match="exceeds the limit"):
        decode(data, max_pixels=PHOTO.shape[0] * PHOTO.shape[1] - 1)


def test_jpeg_encode_is_deterministic_420_and_faithful() -> None:
    pixels = np.ascontiguousarray(PHOTO[:224, :224])
    first = encode(pixels, "jpg", 95)
    assert first == encode(pixels.copy(), "jpg", 95)
    assert simplejpeg.decode_jpeg_header(first)[2:] == ("YCbCr", "420")
    with Image.open(io.BytesIO(first)) as img:
        assert img.format == "JPEG" and img.size == (224, 224)
    back = decode(first).pixels.astype(int)
    assert np.abs(back - pixels).mean() < 2.5  # q95 is close to the pixels it was given
    assert len(encode(pixels, "jpg", 50)) < len(first)  # quality is honoured
    # A view that is not C-contiguous (a flip) encodes as its pixels, not its memory.
    flipped = pixels[:, ::-1]
    assert encode(flipped, "jpg", 95) == encode(np.ascontiguousarray(flipped), "jpg", 95)


@pytest.mark.parametrize(
    ("fit", "needed"),
    [("pad", (150, 100)), ("crop", (226, 150)), ("stretch", (150, 150))],
)
def test_needed_source_size_is_the_fitted_size(fit: str, needed: tuple[int, int]) -> None:
    spec = Preprocess(width=150, height=150, fit=fit)  # type: ignore[arg-type]
    assert spec.needed_source_size(451, 300) == needed
    assert spec.needed_source_size(100, 80) == (100, 80)  # never more than the source
    assert Preprocess().needed_source_size(451, 300) == (451, 300)  # no size: keep it


def test_reduced_jpeg_decode_is_big_enough_and_the_same_picture() -> None:
    data = jpeg(PHOTO)  # 451 x 300
    spec = Preprocess(width=112, height=112, fit="pad", pad_mode="blur")
    reduced = decode(data, needed=spec.needed_source_size).pixels
    # 1/4 scale (113 x 75) still covers the 112 x 75 fitted image; 1/8 would not.
    assert reduced.shape == (75, 113, 3)
    full = apply_preprocess(decode(data).pixels, spec).astype(int)
    fast = apply_preprocess(reduced, spec).astype(int)
    assert fast.shape == full.shape == (112, 112, 3)
    assert np.abs(fast - full).mean() < 4  # the same picture, resampled a little differently


def test_reduced_decode_keeps_exif_orientation() -> None:
    img = Image.fromarray(PHOTO)
    exif = img.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=90)
    spec = Preprocess(width=112, height=112, fit="pad")
    pixels = decode(buf.getvalue(), needed=spec.needed_source_size).pixels
    assert np.array_equal(pixels, pillow_rgb(buf.getvalue()))  # upright, via Pillow


def test_grayscale_rgba_and_16_bit_sources_decode_to_rgb_uint8() -> None:
    gray = Image.open(TEXTURES / "brick" / "brick_01.jpg")
    assert gray.mode == "L"
    buf = io.BytesIO()
    gray.save(buf, "PNG")
    pixels = decode(buf.getvalue()).pixels
    assert pixels.shape[2] == 3 and np.array_equal(pixels[..., 0], pixels[..., 2])
    # RGBA: transparent pixels take the background colour.
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    pixels = decode(buf.getvalue(), background=(0, 0, 255)).pixels
    assert tuple(pixels[0, 0]) == (200, 0, 0) and tuple(pixels[3, 3]) == (0, 0, 255)
    # 16-bit: scaled by the full range.
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 0xFFFF, np.uint16)).save(buf, "PNG")
    assert decode(buf.getvalue()).pixels.max() == 255
