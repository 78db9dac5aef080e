"""Real faulty files, made with Pillow, for the bad-input tests: each is what a messy dataset
really holds (a half-copied JPEG, a CMYK scan, a 16-bit PNG...), written to disk."""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import TEXTURES


def photo(name: str = "grass/grass_01.jpg") -> bytes:
    return (TEXTURES / name).read_bytes()


def encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgb_image(width: int = 40, height: int = 30, colour: tuple[int, int, int] = (200, 40, 40)):
    return Image.new("RGB", (width, height), colour)


def truncated_jpeg() -> bytes:
    data = encoded(Image.open(io.BytesIO(photo())).convert("RGB"), "JPEG", quality=95)
    return data[: len(data) // 2]  # a half-finished copy: the header is intact


def cmyk_jpeg() -> bytes:
    return encoded(rgb_image(colour=(30, 120, 220)).convert("CMYK"), "JPEG", quality=95)


def png16() -> bytes:
    ramp = np.tile(np.linspace(0, 0xFFFF, 40, dtype=np.uint16), (30, 1))
    return encoded(Image.fromarray(ramp), "PNG")


def palette_png_with_transparency() -> bytes:
    img = rgb_image(colour=(0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    return encoded(img, "PNG", transparency=img.getpixel((0, 0)))  # the only colour: see-through


def rgba_png() -> bytes:
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, :20, 3] = 255  # left half opaque blue, right half fully transparent
    return encoded(Image.fromarray(rgba, "RGBA"), "PNG")


def grayscale_jpeg() -> bytes:
    return encoded(Image.new("L", (40, 30), 90), "JPEG", quality=95)


def exif_rotated_jpeg() -> bytes:
    """A white landscape 80x40 whose EXIF says "rotate 90 to view": upright it is 40x80."""
    img = rgb_image(80, 40, (255, 255, 255))
    exif = img.getexif()
    exif[0x0112] = 6
    return encoded(img, "JPEG", exif=exif, quality=95)


def animated_gif() -> bytes:
    frames = [rgb_image(colour=c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with almost no data: what a
    decompression bomb looks like before anything is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under root, hidden ones and links included: a file's sha256, a link's
    target. Equal before and after a run means the input was left untouched."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = os.fsencode(path.relative_to(root)).hex()
            if path.is_symlink():
                state[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[rel] = "dir"
    return state


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_root_file_access() -> None:
    # Root reads and writes past permission bits only through these two capabilities.
    # Dropped from the bounding set before exec, the child's root has them no more.
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def permission_bits_binding() -> Callable[[], None] | None:
    """A `preexec_fn` for a child process that permission bits bind (None if they bind
    already); skips the test, with the reason, when running as root without the means."""
    with tempfile.TemporaryDirectory() as tmp:
        locked = Path(tmp) / "locked"
        locked.mkdir(mode=0o000)
        try:
            os.listdir(locked)
        except PermissionError:
            return None  # not root: the bits bind already
        finally:
            locked.chmod(0o755)
        locked.chmod(0o000)
        try:
            check = subprocess.run(
                [sys.executable, "-c", f"import os; os.listdir({str(locked)!r})"],
                preexec_fn=_drop_root_file_access,
                capture_output=True,
                check=False,
            )
        except subprocess.SubprocessError:
            check = None
        finally:
            locked.chmod(0o755)
    if check is None or b"PermissionError" not in check.stderr:
        pytest.skip("running as root without the capability to drop CAP_DAC_OVERRIDE")
    return _drop_root_file_access
