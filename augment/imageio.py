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
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

OutputFormat = Literal["jpg", "png", "webp"]
FORMAT_CHOICES = ("same", "jpg", "png", "webp")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# The Pillow decoders those extensions stand for (a JPEG with several frames opens as MPO).
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")

# Pillow's format name -> the output format that keeps it ("same"); lossless otherwise.
_SAME_FORMAT: dict[str, OutputFormat] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "MPO": "jpg"}

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit, made explicit


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
    Image.DecompressionBombError,
)


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


class UnreadableImage(Exception):
    """A source file is not a decodable image; the message says why, for the manifest."""


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # H x W x 3 uint8 RGB, C-contiguous
    source_format: str  # Pillow's name for what the bytes really are, e.g. "JPEG"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def same_format(source_format: str) -> OutputFormat:
    return _SAME_FORMAT.get(source_format, "png")


def decode(
    data: bytes,
    background: tuple[int, int, int] = (255, 255, 255),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """Decode image bytes into an upright RGB uint8 array, by the module's mode rules."""
    try:
        with open_image(data, max_pixels) as img, _quiet():
            source_format = img.format or "unknown"
            img.seek(0)
            img.load()
            upright = ImageOps.exif_transpose(img)
            pixels = _to_rgb(upright, background)
    except UnreadableImage:
        raise
    except _DECODE_ERRORS as exc:
        # The text is what the user needs in the summary and augment.json.
        raise UnreadableImage(f"not a readable image: {_describe(exc)}") from exc
    return Decoded(pixels=pixels, source_format=source_format)


@contextlib.contextmanager
def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """Open image bytes lazily (header only) as one of `IMAGE_FORMATS`, within `max_pixels`.

    Raises UnreadableImage with a reason a user can act on.
    """
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
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(f"not a readable image: {_describe(exc)}") from exc
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise UnreadableImage(
                f"{width}x{height} pixels exceeds the limit of {max_pixels} pixels "
                "(--max-pixels; a decompression-bomb guard)"
            )
        yield img


def _open_within(data: bytes, max_pixels: int) -> Image.Image:
    # Pillow has its own bomb guard (a warning above MAX_IMAGE_PIXELS, an error above twice
    # that). Ours replaces it: the warning is silenced, and only when the user raised the
    # limit past Pillow's hard one is Pillow's guard lifted, for this one call.
    with _quiet():
        try:
            return Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError:
            pillow_limit = Image.MAX_IMAGE_PIXELS
            if pillow_limit is None or max_pixels <= 2 * pillow_limit:
                raise UnreadableImage(
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


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
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
    buf = io.BytesIO()
    img = Image.fromarray(pixels, "RGB")
    if fmt == "jpg":
        img.save(buf, "JPEG", quality=quality, subsampling=2)
    elif fmt == "png":
        # Level 3 is ~3x faster than Pillow's default 6 for a few percent larger files.
        img.save(buf, "PNG", compress_level=3)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:  # pragma: no cover - guarded by the CLI's choices
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue()
