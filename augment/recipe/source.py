"""Which file a `--recipe` names, and what it says, found and read without albumentations.

A bundled name (`default`), a path to a YAML file, or a file albumentations saved itself
(`A.save`, YAML or JSON), taken as the recipe's `augment` part. `augment/recipe/build.py`
builds and checks the transforms from it; a rerun proven unchanged (augment/uptodate.py)
only needs to know that the recipe says what it said last time, and must not pay for
importing albumentations to learn it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from augment.bounded import load_yaml
from augment.errors import RecipeError, did_you_mean

# A recipe file: YAML, or the JSON albumentations' `A.save` writes (JSON is YAML too).
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
# The top-level keys of a file albumentations saved itself (`A.save`, YAML or JSON).
ALBUMENTATIONS_FILE_KEYS = frozenset({"__version__", "transform"})


def bundled_recipes_dir() -> Path:
    try:
        return Path(str(resources.files("augment.pipelines")))
    except ModuleNotFoundError:  # running from a source tree that was not installed
        return Path(__file__).resolve().parents[2] / "pipelines"


def bundled_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(bundled_recipes_dir().glob("*.yaml"))}


def find_recipe(name_or_path: str) -> Path:
    """The YAML file `name_or_path` names: a path to one, or a bundled recipe's name.
    RecipeError, with the likely name, when there is none."""
    path = Path(name_or_path)
    if path.suffix.lower() in RECIPE_SUFFIXES and path.exists():
        return path
    bundled = bundled_recipes()
    if name_or_path in bundled:
        return bundled[name_or_path]
    if path.suffix.lower() in RECIPE_SUFFIXES:
        raise RecipeError(f"recipe file {name_or_path} does not exist")
    raise RecipeError(
        f"unknown recipe {name_or_path!r}"
        + did_you_mean(name_or_path, list(bundled))
        + f"; bundled recipes: {', '.join(bundled)}; or give a path to a .yaml or .json file"
    )


@dataclass(frozen=True)
class RecipeFile:
    """A recipe file as one run sees it: found and read once, so that what the rerun digest
    records and what the pixels are made from are the same text, even if the file is saved
    again while the run goes on."""

    path: Path
    text: str

    @property
    def name(self) -> str:
        return self.path.stem

    @functools.cached_property
    def document(self) -> Any:
        """The parsed YAML; yaml.YAMLError when it is not YAML. A file albumentations saved
        itself (`A.save`) is the recipe's `augment` part."""
        doc = load_yaml(self.text)
        if isinstance(doc, dict) and "transform" in doc and set(doc) <= ALBUMENTATIONS_FILE_KEYS:
            return {"augment": doc}
        return doc

    @property
    def statement(self) -> str | None:
        """What the recipe says, as canonical JSON of its YAML: a comment or a layout change
        leaves it alone. None when it cannot be parsed; building it (augment/recipe/build.py)
        then says why."""
        import yaml  # a command that reads no recipe (--help, diff) does without

        try:
            return json.dumps([self.name, self.document], sort_keys=True, default=repr)
        except (yaml.YAMLError, TypeError, ValueError):
            return None


def read_recipe(name_or_path: str) -> RecipeFile:
    """The recipe `name_or_path` names, read (RecipeError when there is none, or it cannot be
    read)."""
    path = find_recipe(name_or_path)
    try:
        return RecipeFile(path, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
