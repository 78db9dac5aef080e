"""The imgaug engine: recipes that say `engine: imgaug` name imgaug augmenters in `augment:`.

```yaml
engine: imgaug
augment:
  - Fliplr: {p: 0.5}
  - Sometimes: {p: 0.5, then_list: [GaussianBlur: {sigma: [0, 0.5]}]}
  - Affine: {rotate: [-25, 25], scale: {x: [0.8, 1.2], y: [0.8, 1.2]}}
```
imgaug comes from the optional `imgaug` extra (the `imaug` fork, which runs on numpy 2). Only
a recipe that names this engine imports this module, so the core never imports imgaug.
Everything else a recipe says (preprocess, mix, per-class policies) stays the tool's own.

In YAML a list of two numbers `[a, b]` is imgaug's tuple `(a, b)`: a value drawn between a and
b. Any other list is imgaug's list, a choice among its values; `{choice: [a, b]}` is a choice
between two numbers. The canonical form (what the fingerprint covers) is the YAML form with
every JSON-able default spelled out, so writing a default changes no output name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from augment.errors import RecipeError, did_you_mean
from augment.imaging.threads import one_cv2_thread
from augment.recipe.policy import pop_policy

ENGINE = "imgaug"
INSTALL = 'pip install "augment[imgaug]"'
# The augmenters that hold other augmenters, and the argument that holds them. A composition's
# children sit under `transforms` in the canonical form, so per-class policies (policy.py)
# treat them as they treat albumentations' compositions.
COMPOSITIONS = {"Sequential": "children", "SomeOf": "children", "OneOf": "children"}
COMPOSITIONS["Sometimes"] = "then_list"
# Seeding is the tool's: each output is seeded from its job's seed, never from the recipe.
_RESERVED = ("seed", "random_state", "deterministic", "name")
_PREFIX = "imgaug.augmenters."
# A drawn value larger than this (a noise map) is left out of the manifest; the seed
# reproduces it.
_MAX_RECORDED = 16


def imgaug_module(where: str) -> ModuleType:
    """`imgaug.augmenters`, or a RecipeError that says how to install it."""
    try:
        import imgaug.augmenters as iaa
    except ImportError as exc:
        raise RecipeError(
            f"{where}: engine: imgaug needs the optional imgaug extra, which is not "
            f"installed ({exc}); install it with: {INSTALL}"
        ) from exc
    return iaa


def imgaug_version() -> str:
    import imgaug

    return str(imgaug.__version__)


def build_augment(spec: object, where: str) -> dict[str, Any]:
    """The canonical form of an imgaug recipe's `augment` part, checked: every augmenter is
    built, and the whole pipeline is run once on a small image, so a mistake fails here
    with the file and augmenter named instead of inside a worker."""
    iaa = imgaug_module(where)
    if spec is None:
        spec = []
    if not isinstance(spec, list):
        raise RecipeError(f"{where}: augment must be a list of imgaug augmenters")
    root: dict[str, Any] = {
        "__class_fullname__": _PREFIX + "Sequential",
        "random_order": False,
        "transforms": [
            _entry(iaa, e, f"{where}: augment entry {i}") for i, e in enumerate(spec, 1)
        ],
    }
    try:
        pipeline = ImgaugPipeline(root)
        pipeline.set_random_state(np.random.default_rng(0), None)
        with one_cv2_thread():
            pipeline(image=np.full((32, 32, 3), 128, np.uint8))
    except Exception as exc:  # imgaug raises assorted types; all mean "this recipe cannot run"
        raise RecipeError(f"{where}: augment: imgaug cannot apply the recipe: {exc}") from exc
    return root


def _entry(iaa: ModuleType, entry: object, at: str) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise RecipeError(f"{at}: expected one `Augmenter: {{args}}` pair, got {entry!r}")
    name, args = next(iter(entry.items()))
    name = str(name).removeprefix("iaa.")
    at = f"{at} ({name})"
    cls = _augmenter_class(iaa, name, at)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RecipeError(f"{at}: arguments must be a mapping, got {args!r}")
    args = dict(args)
    policy = pop_policy(args, at)
    children: list[dict[str, Any]] | None = None
    if name in COMPOSITIONS:
        key = COMPOSITIONS[name]
        listed = args.pop(key, None)
        if isinstance(listed, dict):  # imgaug accepts one augmenter as well as a list
            listed = [listed]
        if not isinstance(listed, list) or not listed:
            raise RecipeError(f"{at}: needs a non-empty `{key}` list of augmenters")
        children = [_entry(iaa, child, at) for child in listed]
    _check_arguments(cls, args, at)
    built = {k: to_imgaug(v) for k, v in args.items()}
    if children is not None:
        built[COMPOSITIONS[name]] = [_build(iaa, child) for child in children]
    try:  # a bad value fails here, naming the augmenter
        cls(**built)
    except Exception as exc:
        raise RecipeError(f"{at}: {exc}") from exc
    canonical: dict[str, Any] = {"__class_fullname__": _PREFIX + name, **_defaults(cls)}
    canonical.update(args)
    canonical.update(policy)
    if children is not None:
        canonical["transforms"] = children
    return canonical


def _augmenter_class(iaa: ModuleType, name: str, at: str) -> type:
    known = augmenter_names(iaa)
    if name in known:
        cls: type = getattr(iaa, name)
        return cls
    raise RecipeError(
        f"{at}: unknown imgaug augmenter {name!r}" + did_you_mean(name, sorted(known))
    )


@cache
def augmenter_names(iaa: ModuleType) -> frozenset[str]:
    """The augmenters a recipe may name: imgaug's, but those that hold other augmenters in
    arguments this engine does not read (WithChannels, Lambda, ...)."""
    names = set()
    for name in dir(iaa):
        obj = getattr(iaa, name)
        if not (isinstance(obj, type) and issubclass(obj, iaa.Augmenter)) or name.startswith("_"):
            continue
        params = _parameters(obj)
        holds = {"children", "then_list", "else_list", "func_images"} & set(params)
        if name in COMPOSITIONS or not holds:
            names.add(name)
    return frozenset(names)


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)  # type: ignore[misc]


def _check_arguments(cls: type, args: dict[str, Any], at: str) -> None:
    valid = [n for n in _parameters(cls) if n not in ("self", *_RESERVED, *COMPOSITIONS.values())]
    for arg in args:
        if arg == "else_list":
            raise RecipeError(
                f"{at}: else_list is not supported; write OneOf: {{children: [...]}} for "
                "one augmenter or the other"
            )
        if arg in _RESERVED:
            raise RecipeError(
                f"{at}: {arg!r} is not a recipe argument: augment seeds every output from its "
                "job's seed (--seed), so outputs stay reproducible for any worker count"
            )
        if arg not in valid:
            raise RecipeError(
                f"{at}: unknown argument {arg!r}"
                + did_you_mean(str(arg), valid)
                + f"; valid arguments: {', '.join(valid)}"
            )


def _defaults(cls: type) -> dict[str, Any]:
    """The JSON-able defaults, in their YAML form: a tuple of two numbers as a list."""
    out: dict[str, Any] = {}
    for name, param in _parameters(cls).items():
        if name in ("self", *_RESERVED, *COMPOSITIONS.values(), "else_list"):
            continue
        value = param.default
        if value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, tuple) and _is_range(list(value)):
            out[name] = list(value)
    return out


def _is_range(value: list[Any]) -> bool:
    return len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )


def to_imgaug(value: Any) -> Any:
    """A YAML value as imgaug reads it: `[a, b]` of numbers a range (tuple), other lists a
    choice (list), `{choice: [...]}` a choice, mappings (Affine's `{x: .., y: ..}`) kept."""
    if isinstance(value, list):
        items = [to_imgaug(v) for v in value]
        return tuple(items) if _is_range(value) else items
    if isinstance(value, dict):
        if set(value) == {"choice"} and isinstance(value["choice"], list):
            return [to_imgaug(v) for v in value["choice"]]
        return {k: to_imgaug(v) for k, v in value.items()}
    return value


def _build(iaa: ModuleType, spec: dict[str, Any]) -> Any:
    name = str(spec["__class_fullname__"]).removeprefix(_PREFIX)
    args = {
        k: to_imgaug(v)
        for k, v in spec.items()
        if k not in ("__class_fullname__", "transforms", "only_classes", "except_classes")
    }
    if name in COMPOSITIONS:
        args[COMPOSITIONS[name]] = [_build(iaa, child) for child in spec["transforms"]]
    return getattr(iaa, name)(**args)


class ImgaugPipeline:
    """An imgaug Sequential called and seeded as the worker calls an albumentations Compose:
    `set_random_state(generator, _)` then `pipeline(image=...)`, which returns the image and
    `applied_transforms`: each augmenter that drew a value, in the order it drew, with the
    values it drew (imgaug has no applied-parameters record of its own)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.augmenter = _build(imgaug_module("recipe"), spec)
        self._drawn: list[tuple[int, str, str, Any]] = []
        _record_draws(self.augmenter, self._drawn)

    def set_random_state(self, generator: np.random.Generator, _python: object) -> None:
        # seed_ gives the whole tree fresh generators derived from this one number: no
        # global state, and the same number gives the same draws in any process.
        self.augmenter.seed_(int(generator.integers(2**63)))

    def __call__(self, *, image: np.ndarray) -> dict[str, Any]:
        self._drawn.clear()
        pixels = self.augmenter.augment_image(image)
        applied: dict[int, tuple[str, dict[str, Any]]] = {}
        for index, name, path, samples in self._drawn:
            value = _recorded(samples)
            if value is not None:
                applied.setdefault(index, (name, {}))[1][path] = value
        return {"image": pixels, "applied_transforms": [_outermost(a) for a in applied.values()]}


def _outermost(applied: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """A parameter's value, without the inner parameters it was drawn through (Binomial's
    `p.other_param`) when the value itself was small enough to record."""
    name, drawn = applied
    kept = {
        path: value
        for path, value in drawn.items()
        if not any(path.startswith(other + ".") for other in drawn)
    }
    return name, kept


def _recorded(samples: Any) -> Any:
    array = np.asarray(samples)
    if array.size > _MAX_RECORDED or array.dtype.kind not in "biuf":
        return None
    return array.item() if array.size == 1 else array.tolist()


def _record_draws(augmenter: Any, sink: list[tuple[int, str, str, Any]]) -> None:
    """Wrap every stochastic parameter of every augmenter in the tree (this instance's own
    parameters: nothing shared is changed) so that what it draws lands in `sink`."""
    import imgaug.parameters as iap

    seen: set[int] = set()
    augmenters = [augmenter, *augmenter.get_all_children(flat=True)]
    for index, aug in enumerate(augmenters):
        label = type(aug).__name__
        for attr, value in vars(aug).items():
            if attr != "random_state":
                _wrap_params(iap, value, attr, index, label, sink, seen)


def _wrap_params(
    iap: ModuleType,
    value: Any,
    path: str,
    index: int,
    label: str,
    sink: list[tuple[int, str, str, Any]],
    seen: set[int],
) -> None:
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _wrap_params(iap, item, f"{path}.{i}", index, label, sink, seen)
        return
    if not isinstance(value, iap.StochasticParameter) or id(value) in seen:
        return
    seen.add(id(value))
    for attr, inner in vars(value).items():
        _wrap_params(iap, inner, f"{path}.{attr}", index, label, sink, seen)
    if isinstance(value, iap.Deterministic):  # a constant: the recipe already says it
        return
    value.draw_samples = _recording(value.draw_samples, index, label, path, sink)


def _recording(
    draw: Callable[..., Any], index: int, label: str, path: str, sink: list[Any]
) -> Callable[..., Any]:
    def draw_samples(size: Any, random_state: Any = None) -> Any:
        samples = draw(size, random_state=random_state)
        sink.append((index, label, path, samples))
        return samples

    return draw_samples


def build_pipeline(spec: dict[str, Any]) -> ImgaugPipeline:
    return ImgaugPipeline(spec)
