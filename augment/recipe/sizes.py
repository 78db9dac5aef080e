"""Transforms in a recipe's `augment` part that would change an image's size.

`augment` runs on train variants only; held-out originals get `preprocess` alone. When the
recipe sets a size there, a transform in `augment` that resizes or crops to another size
would make train and validation images differ in size, which a trainer notices only as a
shape error, or not at all. Such a transform is refused with the way out: put the size in
`preprocess`, which every split gets alike. Without a preprocess size every image keeps its
own, and a crop is the user's choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Output size fixed by the transform's height/width (or size) arguments: fine when it is the
# preprocess size.
FIXED_SIZE = frozenset(
    {"Resize", "RandomCrop", "CenterCrop", "RandomResizedCrop", "RandomSizedCrop", "Crop"}
)
# Output size follows the input's, scaled or padded: always another size.
SIZE_CHANGING = frozenset(
    {
        "LongestMaxSize",
        "SmallestMaxSize",
        "RandomScale",
        "PadIfNeeded",
        "CropAndPad",
        "RandomSizedBBoxSafeCrop",
        "CropNonEmptyMaskIfExists",
        "RandomCropFromBorders",
        "RandomCropNearBBox",
        "BBoxSafeRandomCrop",
        "AtLeastOneBBoxRandomCrop",
    }
)


def _transforms(entries: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    for entry in entries:
        if isinstance(entry, Mapping):
            yield entry
            yield from _transforms(entry.get("transforms") or [])


def _output_size(entry: Mapping[str, Any]) -> tuple[int, int] | None:
    """(width, height) a fixed-size transform makes, or None if its arguments do not say."""
    size = entry.get("size")
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[1]), int(size[0])
    height, width = entry.get("height"), entry.get("width")
    if isinstance(height, int) and isinstance(width, int):
        return width, height
    return None


def size_changes(augment: Mapping[str, Any], size: tuple[int, int] | None) -> list[str]:
    """The transforms (albumentations' dict form) that would leave a variant another size
    than `size` (width, height: the preprocess size). None: there is no common size to
    keep (held-out originals keep their own sizes), so nothing is refused."""
    found: list[str] = []
    if size is None:
        return found
    for entry in _transforms(augment.get("transforms") or []):
        name = str(entry.get("__class_fullname__", "")).rsplit(".", 1)[-1]
        if name in SIZE_CHANGING:
            found.append(name)
        elif name in FIXED_SIZE:
            made = _output_size(entry)
            if made is None or tuple(made) != tuple(size):
                shown = f" to {made[0]}x{made[1]}" if made else ""
                found.append(f"{name}{shown}")
    return found
