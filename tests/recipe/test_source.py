"""Finding a recipe by name: a misspelt name says which bundled recipe was meant."""

from __future__ import annotations

import pytest

from augment.errors import RecipeError
from augment.recipe.build import load_recipe


def test_unknown_recipe_name() -> None:
    with pytest.raises(RecipeError, match="did you mean 'default'"):
        load_recipe("defualt")
