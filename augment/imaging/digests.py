"""What manifests and headers identify content by: sha256 digests of bytes and files, and
the perceptual hash value (`ImageHash`) of an image.

Values only, with no image library: computing a perceptual hash (augment/similarity.py)
needs OpenCV and numpy, reading one back from a header does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_of(*parts: object) -> str:
    """The sha256 of parts joined by NUL bytes: how names, seeds and ranks are keyed."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def size_and_sha256_file(path: Path) -> tuple[int, str]:
    """The bytes read and their sha256, in one pass (a shard's commit line holds both)."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return f.tell(), digest.hexdigest()


# slots: there is one per source, held for the whole run; __slots__ saves almost half.
@dataclass(frozen=True, slots=True)
class ImageHash:
    """The perceptual hash of an image and of its horizontal mirror."""

    direct: int
    mirror: int

    def to_hex(self) -> str:
        return f"{self.direct:016x}{self.mirror:016x}"

    @classmethod
    def from_hex(cls, text: str) -> ImageHash:
        if len(text) != 32:
            raise ValueError(f"an image hash has 32 hex digits, not {text!r}")
        return cls(direct=int(text[:16], 16), mirror=int(text[16:], 16))
