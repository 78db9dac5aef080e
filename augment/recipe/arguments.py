"""Recipe arguments as albumentations wants them: the transform a name means, readable
names for OpenCV constants, numbers and colours checked, and a wrong name or argument
answered with a "did you mean" hint naming the entry."""

from __future__ import annotations

import inspect
import math
from typing import Any

import albumentations as A
import cv2

from augment.errors import RecipeError, did_you_mean
from augment.recipe.transforms import OWN_TRANSFORMS

BORDER_MODES = {
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
    "reflect_101": cv2.BORDER_REFLECT_101,
    "reflect101": cv2.BORDER_REFLECT_101,
    "symmetric": cv2.BORDER_REFLECT,
    "edge": cv2.BORDER_REPLICATE,
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
}
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
COMPOSITIONS = {"OneOf": A.OneOf, "SomeOf": A.SomeOf, "Sequential": A.Sequential}


def number(value: object, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{at} must be a number, got {value!r}")
    return float(value)


def colour(value: object, where: str) -> tuple[int, int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * 3
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise RecipeError(f"{where} must be an RGB colour like [255, 255, 255], got {value!r}")


def transform_class(name: str, at: str) -> type[A.BasicTransform]:
    if name in OWN_TRANSFORMS:
        return OWN_TRANSFORMS[name]
    cls = getattr(A, name, None)
    if isinstance(cls, type) and issubclass(cls, A.BasicTransform):
        return cls
    known = [*OWN_TRANSFORMS, *_albumentations_names(), *COMPOSITIONS]
    raise RecipeError(f"{at}: unknown transform {name!r}" + did_you_mean(name, known))


def _albumentations_names() -> list[str]:
    return [
        n
        for n in dir(A)
        if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)
    ]


def construct(cls: type, args: dict[str, Any], at: str) -> Any:
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]  # cls is a class
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n != "self"]
        for arg in args:
            if arg not in params:
                raise RecipeError(
                    f"{at}: unknown argument {arg!r}"
                    + did_you_mean(arg, valid)
                    + f"; valid arguments: {', '.join(valid)}"
                )
    try:
        return cls(**args)
    except Exception as exc:  # pydantic ValidationError, ValueError, TypeError: all "bad argument"
        raise RecipeError(f"{at}: {exc}") from exc


def convert_args(args: dict[str, Any], at: str) -> dict[str, Any]:
    """Accept readable names where albumentations wants OpenCV constants."""
    out = dict(args)
    named = {"border_mode": BORDER_MODES}
    named |= dict.fromkeys(("interpolation", "mask_interpolation"), INTERPOLATIONS)
    for key, modes in named.items():
        if isinstance(out.get(key), str):
            mode = out[key].lower()
            if mode not in modes:
                raise RecipeError(f"{at}: {key} {out[key]!r} is not one of {', '.join(modes)}")
            out[key] = modes[mode]
    return out


def check_finite(doc: object, where: str) -> None:
    """Every number in the recipe finite: YAML reads `.inf` and `.nan`, and albumentations
    takes them (`rotate: [-.inf, .inf]` makes black images, and writes `Infinity`/`NaN` that
    strict JSON readers refuse into the manifest). RecipeError naming the first one."""
    stack: list[tuple[object, str]] = [(doc, "")]
    while stack:
        value, at = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{where}: {at or 'the recipe'} must be a finite number, got {value}")
        if isinstance(value, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(value))
