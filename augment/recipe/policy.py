"""Per-class policies: `only_classes` / `except_classes` on a recipe entry. Read and checked
from an entry's arguments, kept in the entry's serialised form (so they are part of the
recipe's fingerprint), and applied by dropping the entries a class may not use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import albumentations as A

from augment.errors import RecipeError

POLICY_KEYS = ("only_classes", "except_classes")


def _policy_allows(entry: Mapping[str, Any], label: str | None) -> bool:
    if label is None:
        return True
    only = entry.get("only_classes")
    if only is not None and label not in only:
        return False
    return label not in entry.get("except_classes", ())


def for_class(entry: dict[str, Any], label: str | None, root: bool = False) -> dict | None:
    """The serialised transform as class `label` may use it: forbidden entries dropped,
    policy keys stripped. A composition left with no transforms is dropped as well."""
    if not root and not _policy_allows(entry, label):
        return None
    out = {k: v for k, v in entry.items() if k not in POLICY_KEYS}
    if "transforms" in entry:
        children = [for_class(c, label) for c in entry["transforms"]]
        out["transforms"] = [c for c in children if c is not None]
        if not out["transforms"] and not root:
            return None
    return out


def removed(entry: dict[str, Any], label: str) -> list[str]:
    if not _policy_allows(entry, label):
        return [short_name(entry)]
    return [name for c in entry.get("transforms", ()) for name in removed(c, label)]


def collect_policy(entry: dict[str, Any], where: str, named: dict[str, list[str]]) -> None:
    listed = [*(entry.get("only_classes") or ()), *entry.get("except_classes", ())]
    if listed:
        named[f"{where} ({short_name(entry)})"] = listed
    for i, child in enumerate(entry.get("transforms", ()), start=1):
        collect_policy(child, f"augment entry {i}" if where == "augment" else where, named)


def short_name(entry: Mapping[str, Any]) -> str:
    return str(entry.get("__class_fullname__", "?")).rsplit(".", 1)[-1]


def attach_policies(
    built: A.BaseCompose | A.BasicTransform,
    serialised: dict[str, Any],
    policies: Mapping[int, dict[str, list[str]]],
) -> None:
    """Put each entry's class policy into its serialised form (the built tree and its dict
    have the same shape), so the policy is part of the recipe's data and fingerprint."""
    serialised.update(policies.get(id(built), {}))
    if isinstance(built, A.BaseCompose):
        for child, child_dict in zip(built.transforms, serialised["transforms"], strict=True):
            attach_policies(child, child_dict, policies)


def pop_policy(args: dict[str, Any], at: str) -> dict[str, list[str]]:
    """Take `only_classes` / `except_classes` out of an entry's arguments, validated."""
    policy: dict[str, list[str]] = {}
    for key in POLICY_KEYS:
        if key not in args:
            continue
        value = args.pop(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise RecipeError(f"{at}: {key} must be a non-empty list of class names")
        names = []
        for item in value:
            # YAML reads `[6, 9]` as numbers; class folder names are text.
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise RecipeError(f"{at}: {key}: {item!r} is not a class name")
            names.append(str(item))
        policy[key] = sorted(set(names))
    if len(policy) == 2:
        raise RecipeError(f"{at}: give only_classes or except_classes, not both")
    return policy
