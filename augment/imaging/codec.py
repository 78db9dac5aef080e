"""Decoding sources into RGB arrays and encoding outputs into bytes.

The rule for odd modes, applied to every source so that every recipe sees the same kind of
array (H x W x 3, uint8, RGB):
- EXIF orientation is applied, so pixels are upright as a viewer shows them;
- grayscale ("L", "1") is replicated into three channels;
- 16-bit and 32-bit integer images are scaled to 8 bits by their full range (value >> 8);
- palette images are expanded; an alpha channel is composited onto the recipe's
  background colour (white unless the recipe says otherwise);
- CMYK and other colour spaces are converted to RGB by Pillow;
- animated images contribute their first frame.

Only the formats in `IMAGE_FORMATS` are decoded, whatever the file's extension: a PNG named
`.jpg` is read as the PNG it is, while a PSD, EPS or any other format Pillow knows is refused
(some of those plugins do far more than decode, e.g. EPS runs Ghostscript). A header that
declares more than `max_pixels` pixels is refused before any pixel is decoded.

Speed: plain JPEGs (YCbCr or grayscale, no EXIF/XMP orientation to apply, not multi-picture)
are decoded and JPEG outputs encoded with simplejpeg, libjpeg-turbo without Pillow's image
objects and copies: about 3x faster to decode, 1.4x to encode. Decoded pixels are identical
to Pillow's (both run libjpeg-turbo's default accurate DCT and fancy upsampling; the tests
check it). Every other file, and any JPEG the fast path declines or fails on, goes through
Pillow, so the rules above and Pillow's error messages hold unchanged. A caller that will
shrink the image anyway may say how large it needs it (`needed`): such a JPEG is then decoded
at 1/2, 1/4 or 1/8 scale by libjpeg's scaled IDCT, no smaller than that, as Pillow's
`thumbnail` does, which saves most of the decode and resize.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import simplejpeg

from augment.defaults import DEFAULT_MAX_PIXELS
from augment.errors import TooManyPixels, UnreadableImage

# Pillow is imported where it is used: a run whose sources are all plain JPEGs, already
# read at ingest by an earlier run, decodes and encodes without it, and importing it
# costs every such run's start-up.
if TYPE_CHECKING:
    from PIL import Image

OutputFormat = Literal["jpg", "png", "webp"]
# The Pillow decoders those extensions stand for (a JPEG with several frames opens as MPO).
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")

# Pillow's format name -> the output format that keeps it ("same"); lossless otherwise.
_SAME_FORMAT: dict[str, OutputFormat] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "MPO": "jpg"}


# What Pillow's decoders raise on malformed bytes: besides OSError/ValueError (truncated,
# corrupt), its plugins let struct, index and arithmetic errors through on hostile headers.
# Each means "this file is not a usable image", a per-file rejection, never a crash.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)  # and Pillow's DecompressionBombError: `_decode_errors`


# File signatures, to tell "a damaged PNG" from "not an image at all" when Pillow gives up.
_MAGIC = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"RIFF", "WEBP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # H x W x 3 uint8 RGB, C-contiguous
    source_format: str  # Pillow's name for what the bytes really are, e.g. "JPEG"


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (*_DECODE_ERRORS, Image.DecompressionBombError)


def same_format(source_format: str) -> OutputFormat:
    return _SAME_FORMAT.get(source_format, "png")


# Given a source's (width, height), the smallest (width, height) the caller needs.
NeededSize = Callable[[int, int], tuple[int, int]]


def decode(
    data: bytes,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    needed: NeededSize | None = None,
) -> Decoded:
    """Decode image bytes into an upright RGB uint8 array, by the module's mode rules.

    With `needed`, a plain JPEG may come back reduced by 2, 4 or 8 (never below
    `needed(width, height)`); every other image comes back at its full size.
    """
    fast = _decode_plain_jpeg(data, max_pixels, needed)
    if fast is not None:
        return Decoded(pixels=fast, source_format="JPEG")
    return decode_with_pillow(data, background, max_pixels)


def decode_with_pillow(
    data: bytes,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """`decode` without the fast JPEG path: every format, every rule (the benchmark times it)."""
    from PIL import ImageOps

    try:
        with open_image(data, max_pixels) as img, _quiet():
            source_format = img.format or "unknown"
            img.seek(0)
            img.load()
            upright = ImageOps.exif_transpose(img)
            pixels = _to_rgb(upright, background)
    except UnreadableImage:
        raise
    except _decode_errors() as exc:
        # The text is what the user needs in the summary and augment.json.
        raise UnreadableImage(f"not a readable image: {_describe(exc)}") from exc
    return Decoded(pixels=pixels, source_format=source_format)


@contextlib.contextmanager
def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open image bytes lazily (header only) as one of `IMAGE_FORMATS`, within `max_pixels`.

    Raises UnreadableImage with a reason a user can act on.
    """
    from PIL import Image

    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        img = _open_within(data, max_pixels)
    except Image.UnidentifiedImageError:
        looks_like = next((f for magic, f in _MAGIC if data.startswith(magic)), None)
        if looks_like is not None:
            raise UnreadableImage(
                f"not a readable image: starts like a {looks_like} file but is damaged"
            ) from None
        raise UnreadableImage(
            f"not an image in a supported format ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except _decode_errors() as exc:
        raise UnreadableImage(f"not a readable image: {_describe(exc)}") from exc
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise TooManyPixels(
                f"{width}x{height} pixels exceeds the limit of {max_pixels} pixels "
                "(--max-pixels; a decompression-bomb guard)"
            )
        yield img


def _open_within(data: bytes, max_pixels: int) -> Image.Image:
    # Pillow has its own bomb guard (a warning above MAX_IMAGE_PIXELS, an error above twice
    # that). Ours replaces it: the warning is silenced, and only when the user raised the
    # limit past Pillow's hard one is Pillow's guard lifted, for this one call.
    from PIL import Image

    with _quiet():
        try:
            return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError:
            pillow_limit = Image.MAX_IMAGE_PIXELS
            if pillow_limit is None or max_pixels <= 2 * pillow_limit:
                raise TooManyPixels(
                    f"more pixels than the limit of {max_pixels} "
                    "(--max-pixels; a decompression-bomb guard)"
                ) from None
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Pillow warns about damage it works around (corrupt EXIF, tags past the end) and about
    # sizes our own limit judges: the file is either usable or rejected with a reason, and a
    # warning per file would only flood the user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# JPEG colour spaces whose RGB conversion is libjpeg's own, identical to Pillow's; CMYK and
# YCCK (Adobe's inverted CMYK, which Pillow handles specially) go through Pillow.
_FAST_JPEG_SPACES = frozenset({"YCbCr", "Gray"})
_SOI = b"\xff\xd8"
_EXIF = b"Exif\x00\x00"
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_MPF = b"MPF\x00"


def _decode_plain_jpeg(
    data: bytes, max_pixels: int, needed: NeededSize | None = None
) -> np.ndarray | None:
    """RGB pixels of a plain JPEG by simplejpeg, or None when Pillow must decode it.

    None also for anything simplejpeg finds wrong (strict mode turns libjpeg's warnings about
    corrupt or truncated data into errors): Pillow then decodes it, or explains why not.
    """
    if not data.startswith(_SOI) or not _is_plain_jpeg(data):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in _FAST_JPEG_SPACES or width * height > max_pixels:
            return None  # Pillow's path applies the limit and words the message
        min_width, min_height = needed(width, height) if needed is not None else (0, 0)
        # min_factor=2: only the 1/2, 1/4, 1/8 reductions, the fast ones (libjpeg-turbo's
        # other M/8 scalings can be slower than a full decode).
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=min_width, min_height=min_height, min_factor=2
        )
    except ValueError:
        return None
    return pixels if pixels.flags.c_contiguous else np.ascontiguousarray(pixels)


def _is_plain_jpeg(data: bytes) -> bool:
    """True when the markers before the image data ask for nothing Pillow would do beyond
    decoding: no EXIF or XMP orientation to apply, no multi-picture (MPO) container."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return False  # not where a marker should be: let Pillow judge the file
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xDA:
            return True  # start of scan: every metadata segment has been seen
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(_EXIF) and _exif_orientation(segment) > 1:
            return False
        if marker == 0xE1 and segment.startswith(_XMP) and b"Orientation" in segment:
            return False  # Pillow also honours an XMP tiff:Orientation
        if marker == 0xE2 and segment.startswith(_MPF):
            return False
        pos += 2 + length
    return False


def _exif_orientation(segment: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in an APP1 Exif segment; 1 if absent, 9 (not
    plain) if the segment cannot be read, so that Pillow decides."""
    tiff = segment[len(_EXIF) :]
    orders: dict[bytes, Literal["little", "big"]] = {b"II": "little", b"MM": "big"}
    order = orders.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 9
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 9
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 9
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return 1


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        scale = 8 if arr.max(initial=0) <= 0xFFFF else 24
        img = Image.fromarray((arr.astype(np.uint32) >> scale).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.clip(np.asarray(img), 0, 255)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        img = Image.alpha_composite(canvas, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img))


def encode(pixels: np.ndarray, fmt: OutputFormat, quality: int) -> bytes:
    """Encode an RGB uint8 array. JPEG uses 4:2:0 chroma subsampling, the common default."""
    if fmt == "jpg":
        # libjpeg-turbo through simplejpeg: baseline JFIF, accurate DCT, standard tables
        # scaled by quality; the same bytes for the same pixels on every run.
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels), quality=quality, colorspace="RGB", colorsubsampling="420"
        )
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(pixels, "RGB")
    if fmt == "png":
        # Level 3 is ~3x faster than Pillow's default 6 for a few percent larger files.
        img.save(buf, "PNG", compress_level=3)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:  # pragma: no cover - guarded by the CLI's choices
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue()
