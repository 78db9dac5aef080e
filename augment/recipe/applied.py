"""The parameters albumentations applied, made small and JSON-friendly for the manifest."""

from __future__ import annotations

from typing import Any

import numpy as np

# Applied parameters bigger than this (noise maps, masks) are left out of the manifest:
# the seed reproduces them, and they would make the manifest larger than the images.
_MAX_PARAM_ELEMENTS = 16
_DROPPED_PARAMS = frozenset({"shape"})


def applied_params(applied: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """albumentations' applied parameters, made small and JSON-friendly for the manifest."""
    out: list[dict[str, Any]] = []
    for name, params in applied:
        entry: dict[str, Any] = {"transform": name}
        for key, value in params.items():
            if key in _DROPPED_PARAMS:
                continue
            # Most values are plain floats and ints: kept as they are, without a call.
            clean = value if type(value) in _PLAIN else _jsonable(value)
            if clean is not _TOO_BIG:
                entry[key] = clean
        out.append(entry)
    return out


_TOO_BIG = object()
# Exactly these types are JSON as they are (a subclass, such as numpy's float64, is not
# taken for one here: it goes through `_jsonable`).
_PLAIN = frozenset({float, int, str, bool, type(None)})


def _jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= _MAX_PARAM_ELEMENTS else _TOO_BIG
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        items = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not _TOO_BIG}
    if isinstance(value, (list, tuple)):
        if len(value) > _MAX_PARAM_ELEMENTS:
            return _TOO_BIG
        clean = [v if type(v) in _PLAIN else _jsonable(v) for v in value]
        return [v for v in clean if v is not _TOO_BIG]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
