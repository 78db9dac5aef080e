"""A recipe's `mix:` list read into MixSpecs, every argument checked when the recipe loads.

```yaml
mix:
  - MixUp: {p: 0.2, alpha: 0.4}
  - CutMix: {p: 0.2, alpha: 1.0, other_class: true}
  - Mosaic: {p: 0.5, centre: [0.25, 0.75], scale: [1, 1]}   # annotated sets
  - CopyPaste: {p: 0.5, classes: [seven], max_per_output: 3, scale: [0.75, 1.25],
                flip: 0.5, blend: 0}                # annotated sets with outlines or masks
```
"""

from __future__ import annotations

from typing import Any

from augment.errors import RecipeError, did_you_mean
from augment.recipe.arguments import number
from augment.recipe.mixing import MIX_KINDS, MOSAIC_CENTRE, MixSpec
from augment.recipe.policy import POLICY_KEYS, pop_policy

# The arguments each entry takes (besides the class policy, which every entry takes).
MIX_ARGS = {
    "MixUp": ("p", "alpha", "other_class"),
    "CutMix": ("p", "alpha", "other_class"),
    "Mosaic": ("p", "centre", "scale"),
    "CopyPaste": ("p", "classes", "max_per_output", "scale", "flip", "blend"),
}


def build_mix(spec: object, where: str) -> tuple[MixSpec, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise RecipeError(f"{where}: mix must be a list like [MixUp: {{p: 0.3, alpha: 0.4}}]")
    entries = [_entry(entry, f"{where}: mix entry {i}") for i, entry in enumerate(spec, start=1)]
    total = sum(e.p for e in entries)
    if total > 1 + 1e-9:
        raise RecipeError(
            f"{where}: mix probabilities add up to {total:g}; at most one mix applies to a "
            "variant, so they must add up to 1 or less"
        )
    return tuple(entries)


def _entry(entry: object, at: str) -> MixSpec:
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise RecipeError(f"{at}: expected one `MixUp: {{args}}` or `CutMix: {{args}}` pair")
    name, args = next(iter(entry.items()))
    at = f"{at} ({name})"
    if name not in MIX_KINDS:
        raise RecipeError(
            f"{at}: unknown mix {name!r}"
            + did_you_mean(str(name), list(MIX_KINDS))
            + f"; mix entries are {', '.join(MIX_KINDS)}"
        )
    if not isinstance(args, dict | None):
        raise RecipeError(f"{at}: arguments must be a mapping")
    args = dict(args or {})
    if name == "Mosaic" and {"alpha", "other_class"} & set(args):
        raise RecipeError(
            f"{at}: Mosaic takes p and a class policy only (and centre and scale, its ranges): "
            "alpha and other_class are MixUp's and CutMix's"
        )
    valid = (*MIX_ARGS[name], *POLICY_KEYS)
    for arg in args:
        if arg not in valid:
            raise RecipeError(
                f"{at}: unknown argument {arg!r}"
                + did_you_mean(str(arg), list(valid))
                + f"; valid arguments: {', '.join(valid)}"
            )
    policy = pop_policy(args, at)
    p = number(args.get("p", 0.5), f"{at}: p")
    alpha = number(args.get("alpha", 1.0), f"{at}: alpha")
    if not 0 <= p <= 1:
        raise RecipeError(f"{at}: p must be between 0 and 1, got {p}")
    if alpha <= 0:
        raise RecipeError(f"{at}: alpha must be positive, got {alpha}")
    other_class = args.get("other_class", False)
    if not isinstance(other_class, bool):
        raise RecipeError(f"{at}: other_class must be true or false")
    only = policy.get("only_classes")
    return MixSpec(
        kind=MIX_KINDS[name],
        p=p,
        alpha=alpha,
        other_class=other_class,
        only_classes=tuple(only) if only is not None else None,
        except_classes=tuple(policy.get("except_classes", ())),
        **_own_options(name, args, at),
    )


def _own_options(name: str, args: dict[str, Any], at: str) -> dict[str, Any]:
    """Mosaic's centre range; CopyPaste's classes, count, jitter and blending."""
    if name == "Mosaic":
        centre = _range(args.get("centre", list(MOSAIC_CENTRE)), f"{at}: centre", 0.0, 1.0)
        scale = _range(args.get("scale", [1.0, 1.0]), f"{at}: scale", 0.25, 2.0)
        return {"centre": centre, "tile_scale": scale}
    if name != "CopyPaste":
        return {}
    classes = args.get("classes")
    if classes is not None and (
        not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
    ):
        raise RecipeError(f"{at}: classes must be a list of class names, like [seven]")
    count = args.get("max_per_output", 3)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise RecipeError(f"{at}: max_per_output must be a whole number from 1 to 100")
    flip = number(args.get("flip", 0.5), f"{at}: flip")
    if not 0 <= flip <= 1:
        raise RecipeError(f"{at}: flip is a probability, between 0 and 1, got {flip:g}")
    blend = number(args.get("blend", 0.0), f"{at}: blend")
    if not 0 <= blend <= 20:
        raise RecipeError(f"{at}: blend is the edge's sigma in pixels, 0 to 20, got {blend:g}")
    return {
        "classes": tuple(classes) if classes is not None else None,
        "max_per_output": count,
        "scale": _range(args.get("scale", [0.75, 1.25]), f"{at}: scale", 0.1, 4.0),
        "flip": flip,
        "blend": blend,
    }


def _range(value: object, at: str, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise RecipeError(f"{at} must be a range [lo, hi], got {value!r}")
    lo, hi = number(value[0], at), number(value[1], at)
    if not low <= lo <= hi <= high:
        raise RecipeError(
            f"{at} must be [lo, hi] with {low:g} <= lo <= hi <= {high:g}, got {value!r}"
        )
    return lo, hi
