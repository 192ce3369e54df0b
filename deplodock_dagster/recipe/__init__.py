"""Recipes: what to deploy and benchmark, on which GPUs, with which settings.

    load_recipe(path) -> Recipe              a folder holding recipe.yaml, or a yaml file
    resolve_variant(path, variant) -> [...]  one ResolvedRecipe per sweep point
    check_recipe(path) -> [RecipeError]      every error, one per field ([] when valid)
    find_recipes(root) -> [Path]             recipe folders under root, sorted
    RECIPES_DIR                              the repository's recipes/ (or
                                             DEPLODOCK_RECIPES_DIR)

The file format, deep merge of variants, engine switches and `matrices` sweeps are described
in recipe/loader.py; field checks live in recipe/validate.py. Importing this package reads
no file and imports no heavy library (PyYAML is imported when a recipe is read).
"""

from deplodock_dagster.recipe.loader import (
    RECIPE_FILE,
    RECIPES_DIR,
    check_recipe,
    default_recipes_dir,
    find_recipes,
    load_recipe,
    resolve_variant,
)
from deplodock_dagster.recipe.types import (
    ENGINES,
    RUNTIMES,
    BenchmarkSpec,
    EngineSpec,
    Recipe,
    ResolvedRecipe,
)

__all__ = [
    "ENGINES",
    "RECIPE_FILE",
    "RECIPES_DIR",
    "RUNTIMES",
    "BenchmarkSpec",
    "EngineSpec",
    "Recipe",
    "ResolvedRecipe",
    "check_recipe",
    "default_recipes_dir",
    "find_recipes",
    "load_recipe",
    "resolve_variant",
]
