"""Recipes: YAML files that say how to preprocess every split and how to augment train.

```yaml
description: One line shown by `augment recipes`.
preprocess:            # applied identically to train, validation and test
  size: [224, 224]     # width, height
  fit: pad             # pad | crop | stretch
  pad_mode: blur       # constant | reflect | edge | wrap | blur
  background: [255, 255, 255]   # colour that transparent pixels are composited onto
augment:               # train only; albumentations 2.0.x transforms or the project's own
  - HorizontalFlip: {p: 0.5, except_classes: ["6", "9"]}   # per-class policy
  - Affine: {rotate: [-10, 10], border_mode: reflect, p: 0.7}
mix:                   # train only; MixUp / CutMix with a second train original
                       # (Mosaic, CopyPaste: annotated sets only; recipe/mix_entries.py)
  - MixUp: {p: 0.2, alpha: 0.4}
  - CutMix: {p: 0.2, alpha: 1.0, other_class: true}
```
Any `augment` entry may carry `only_classes: [...]` or `except_classes: [...]`: the transform
is then never applied to images of the other / the listed classes (a flipped 9 is a 6). The
worker builds one pipeline per class with the forbidden transforms removed; class names are
checked against the dataset once it is read (`Recipe.check_classes`).

An `augment` entry may also be albumentations' own serialised form (`A.to_dict` output, or
a list of `{__class_fullname__: ...}` items). Everything is validated when the recipe is
loaded, so a typo fails at once with the file and transform named, not inside a worker.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import albumentations as A
import cv2
import numpy as np
import PIL
import simplejpeg
import yaml

from augment.errors import RecipeError, did_you_mean
from augment.recipe.arguments import (
    COMPOSITIONS,
    check_finite,
    colour,
    construct,
    convert_args,
    transform_class,
)
from augment.recipe.mix_entries import build_mix
from augment.recipe.mixing import MIX_KINDS, MixSpec
from augment.recipe.policy import (
    attach_policies,
    collect_policy,
    for_class,
    pop_policy,
    removed,
)
from augment.recipe.preprocess import Preprocess
from augment.recipe.sizes import refuse_size_changes
from augment.recipe.source import RecipeFile, read_recipe

# Bump when a change to the project's own pixel code changes output bytes, so that every
# output name changes with it and no downstream cache can serve a stale image.
# 2: JPEG sources decoded at reduced scale when preprocessing shrinks them; 3: the `blur`
# pad's background blurred at 32 pixels instead of 64.
PIXEL_VERSION = 3

RECIPE_KEYS = frozenset({"description", "engine", "preprocess", "augment", "mix"})
# The engine that runs the `augment` part; imgaug's only when a recipe names it (imgaug_engine.py).
ENGINES = ("albumentations", "imgaug")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    preprocess: Preprocess
    background: tuple[int, int, int]
    # Canonical albumentations serialisation of the augment part: every argument resolved,
    # so cosmetic YAML edits (order, comments, spelled-out defaults) leave it unchanged.
    # Entries with a per-class policy carry `only_classes` / `except_classes` keys, which
    # `build_pipeline` strips after choosing the entries a class may use.
    augment: dict[str, Any] = field(repr=False)
    mix: tuple[MixSpec, ...] = ()
    engine: str = "albumentations"
    engine_version: str | None = None  # imgaug's version, for the fingerprint

    def build_pipeline(self, label: str | None = None) -> A.Compose:
        """A fresh pipeline for images of class `label` (None: every transform); callers seed
        it per job with `seed_pipeline`. An imgaug recipe's is called and seeded the same."""
        if self.engine == "imgaug":
            from augment.recipe.imgaug_engine import build_pipeline

            return build_pipeline(for_class(self.augment, label, root=True) or {})
        return self._albumentations_pipeline(label)

    def _albumentations_pipeline(self, label: str | None) -> A.Compose:
        spec = for_class(self.augment, label, root=True)
        assert spec is not None
        pipeline = A.from_dict({"transform": spec})
        assert isinstance(pipeline, A.Compose)
        pipeline.save_applied_params = True
        return pipeline

    def removed_for(self, label: str) -> list[str]:
        """Names of the transforms the policy removes for class `label`, in recipe order."""
        return removed(self.augment, label)

    def policy_classes(self) -> dict[str, list[str]]:
        """Where each policy names classes: a readable place -> the class names it lists."""
        named: dict[str, list[str]] = {}
        collect_policy(self.augment, "augment", named)
        for i, spec in enumerate(self.mix, start=1):
            listed = [*(spec.only_classes or ()), *spec.except_classes, *(spec.classes or ())]
            if listed:
                named[f"mix entry {i} ({_MIX_NAME[spec.kind]})"] = listed
        return named

    def check_classes(self, classes: Sequence[str]) -> None:
        """Fail if a policy names a class the dataset does not have (a typo would otherwise
        silently leave the transform on for the class it was meant to protect)."""
        known = set(classes)
        for where, listed in self.policy_classes().items():
            for name in listed:
                if name not in known:
                    raise RecipeError(
                        f"recipe {self.name}: {where} names class {name!r}, which the dataset "
                        f"does not have"
                        + did_you_mean(name, sorted(known))
                        + f"; classes: {', '.join(sorted(known))}"
                    )

    def preprocess_fingerprint(self, output_format: str, quality: int) -> str:
        """Covers what makes validation/test and train originals' pixels and bytes."""
        return _digest(
            {
                "preprocess": self.preprocess.to_dict(),
                "background": list(self.background),
                # PNG is lossless: its quality setting changes no byte, so no name either.
                "output": [output_format, None if output_format == "png" else quality],
                "versions": _pixel_library_versions(),
            }
        )

    def fingerprint(self, output_format: str, quality: int) -> str:
        """Covers everything that makes augmented variants' pixels and bytes."""
        parts: dict[str, Any] = {
            "base": self.preprocess_fingerprint(output_format, quality),
            "augment": self.augment,
            "albumentations": A.__version__,
            # Transforms draw from random.Random, whose methods other than random()
            # may change between Python versions (the docs promise only random()).
            "python": "{}.{}".format(*sys.version_info[:2]),
        }
        if self.mix:  # only when present, so recipes without mixing keep their fingerprints
            parts["mix"] = [m.to_dict() for m in self.mix]
        if self.engine != "albumentations":  # likewise: albumentations recipes keep theirs
            parts["engine"] = [self.engine, self.engine_version]
        return _digest(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "preprocess": {**self.preprocess.to_dict(), "background": list(self.background)},
            "augment": self.augment,
        }
        if self.mix:
            out["mix"] = [m.to_dict() for m in self.mix]
        if self.engine != "albumentations":
            out["engine"] = {"name": self.engine, "version": self.engine_version}
        return out


_MIX_NAME = {kind: name for name, kind in MIX_KINDS.items()}


class Seedable(Protocol):
    """A pipeline seeded as an `A.Compose` is (recipe/fused.py's is one too)."""

    def set_random_state(
        self, random_generator: np.random.Generator, py_random: random.Random
    ) -> None: ...


def seed_pipeline(pipeline: Seedable, seed: int) -> None:
    # One generator pair shared by every transform. Compose(seed=...) instead gives each
    # transform its own generator with the same seed, so their draws (e.g. "apply with
    # p=0.5") would be identical and the transforms would fire together.
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def load_recipe(name_or_path: str) -> Recipe:
    """Load a bundled recipe by name (`default`) or a YAML file by path."""
    return build_recipe(read_recipe(name_or_path))


def parse_recipe(text: str, name: str, where: str) -> Recipe:
    """A recipe from its YAML text; `where` names it in error messages."""
    return build_recipe(RecipeFile(Path(where), text), name)


def build_recipe(file: RecipeFile, name: str | None = None) -> Recipe:
    """The recipe `file` holds, built and checked: a mistake fails here, naming the entry."""
    where = str(file.path)
    name = file.name if name is None else name
    try:
        doc = file.document
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not valid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RecipeError(f"{where}: a recipe is a mapping with preprocess/augment keys")
    check_finite(doc, where)
    unknown = sorted(set(map(str, doc)) - RECIPE_KEYS)
    if unknown:
        raise RecipeError(
            f"{where}: unknown key(s) {', '.join(unknown)}; "
            f"a recipe has {', '.join(sorted(RECIPE_KEYS))}"
        )
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise RecipeError(f"{where}: description must be text")

    pre = doc.get("preprocess") or {}
    if not isinstance(pre, dict):
        raise RecipeError(f"{where}: preprocess must be a mapping")
    pre = dict(pre)
    background = colour(pre.pop("background", (255, 255, 255)), f"{where}: preprocess.background")
    try:
        preprocess = Preprocess.from_dict(pre)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"{where}: preprocess: {exc}") from exc

    engine, engine_version = _engine(doc.get("engine", "albumentations"), where)
    if engine == "imgaug":
        from augment.recipe import imgaug_engine  # imported only for a recipe that uses it

        augment = imgaug_engine.build_augment(doc.get("augment"), where)
    else:
        augment = _albumentations_augment(doc.get("augment"), where)
        refuse_size_changes(augment, preprocess.size, where)
    mix = build_mix(doc.get("mix"), where)
    if mix and preprocess.size is None:
        raise RecipeError(
            f"{where}: mix needs preprocess.size: both images of a mix must have one size"
        )
    return Recipe(
        name=name,
        description=description.strip(),
        preprocess=preprocess,
        background=background,
        augment=augment,
        mix=mix,
        engine=engine,
        engine_version=engine_version,
    )


def _engine(name: object, where: str) -> tuple[str, str | None]:
    """The engine a recipe names, and its version when it is not albumentations."""
    if name not in ENGINES:
        raise RecipeError(
            f"{where}: unknown engine {name!r}"
            + did_you_mean(str(name), ENGINES)
            + f"; engines: {', '.join(ENGINES)}"
        )
    if name == "albumentations":
        return "albumentations", None
    from augment.recipe import imgaug_engine

    imgaug_engine.imgaug_module(where)  # says how to install the extra when it is missing
    return "imgaug", imgaug_engine.imgaug_version()


def _albumentations_augment(spec: object, where: str) -> dict[str, Any]:
    policies: dict[int, dict[str, list[str]]] = {}
    transforms = _build_augment(spec, where, policies)
    try:
        compose = A.Compose(transforms, p=1.0)
        # Round-trip now: a transform that cannot be rebuilt from its dict would otherwise
        # fail inside every worker. The rebuilt pipeline's dict is the canonical form: a
        # first serialisation can still say `0` where a reloaded one says `0.0`, and the
        # fingerprint must not depend on which form the recipe was written in.
        rebuilt = A.from_dict(A.to_dict(compose))
        augment = A.to_dict(rebuilt)["transform"]
    except Exception as exc:  # albumentations raises assorted types here; all mean "bad recipe"
        raise RecipeError(f"{where}: augment: {exc}") from exc
    augment = json.loads(json.dumps(augment, default=_jsonable))
    attach_policies(compose, augment, policies)
    return augment


def _build_augment(
    spec: object, where: str, policies: dict[int, dict[str, list[str]]]
) -> list[A.BasicTransform | A.BaseCompose]:
    if spec is None:
        return []
    if isinstance(spec, dict) and "transform" in spec:  # a whole A.to_dict document
        try:
            loaded = A.from_dict(spec)
        except Exception as exc:
            raise RecipeError(f"{where}: augment: cannot load albumentations dict: {exc}") from exc
        # A saved Compose is unwrapped so that it fingerprints like the same list in YAML.
        return list(loaded.transforms) if isinstance(loaded, A.Compose) else [loaded]
    if not isinstance(spec, list):
        raise RecipeError(f"{where}: augment must be a list of transforms")
    return [_build_entry(entry, where, i, policies) for i, entry in enumerate(spec, start=1)]


def _build_entry(
    entry: object, where: str, index: int, policies: dict[int, dict[str, list[str]]]
) -> A.BasicTransform | A.BaseCompose:
    at = f"{where}: augment entry {index}"
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict):
        raise RecipeError(f"{at}: expected `Name: {{args}}`, got {entry!r}")
    if "__class_fullname__" in entry:
        entry = dict(entry)
        policy = pop_policy(entry, at)
        try:
            loaded = A.from_dict({"transform": entry})
        except Exception as exc:
            raise RecipeError(f"{at}: cannot load albumentations dict: {exc}") from exc
        if policy:
            policies[id(loaded)] = policy
        return loaded
    if len(entry) != 1:
        raise RecipeError(f"{at}: expected one `Name: {{args}}` pair, got keys {sorted(entry)}")
    name, args = next(iter(entry.items()))
    at = f"{where}: augment entry {index} ({name})"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RecipeError(f"{at}: arguments must be a mapping, got {args!r}")
    args = dict(args)
    policy = pop_policy(args, at)
    if name in COMPOSITIONS:
        children = args.pop("transforms", None)
        if not isinstance(children, list) or not children:
            raise RecipeError(f"{at}: needs a non-empty `transforms` list")
        built = [_build_entry(c, where, index, policies) for c in children]
        made = construct(COMPOSITIONS[name], {**args, "transforms": built}, at)
    else:
        cls = transform_class(str(name), at)
        made = construct(cls, convert_args(args, at), at)
    if policy:
        policies[id(made)] = policy
    return made


def _pixel_library_versions() -> dict[str, str]:
    return {
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "simplejpeg": simplejpeg.__version__,  # decodes and encodes plain JPEGs
        "augment-pixels": str(PIXEL_VERSION),
    }


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _digest(obj: Mapping[str, Any] | Sequence[Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
