"""Turn recipe paths (and an optional variant filter) into the flat list of benchmark tasks.

Every recipe is loaded and checked in full first, so a bad recipe stops the run before any
VM is rented. The planner then groups the tasks onto VMs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from deplodock_dagster.errors import RecipeError
from deplodock_dagster.planner import BenchmarkTask
from deplodock_dagster.recipe import Recipe, load_recipe


def enumerate_tasks(
    recipe_paths: Iterable[str | os.PathLike], variants: Iterable[str] | None = None
) -> list[BenchmarkTask]:
    """One BenchmarkTask per recipe, variant and sweep point, in file order.

    `variants` keeps only the named variants; a recipe without any of them contributes
    nothing, but a name that no recipe has raises RecipeError listing the available ones.
    """
    recipes: list[Recipe] = [load_recipe(path) for path in recipe_paths]
    wanted = list(dict.fromkeys(variants)) if variants is not None else None

    if wanted is not None:
        available = list(dict.fromkeys(name for recipe in recipes for name in recipe.variants))
        unknown = [name for name in wanted if name not in available]
        if unknown:
            where = recipes[0].path if len(recipes) == 1 else "recipes"
            raise RecipeError(
                where,
                "variants",
                f"unknown variant{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                f"available: {', '.join(available) or 'none'}",
            )

    return [
        BenchmarkTask(recipe=task)
        for recipe in recipes
        for task in recipe.tasks
        if wanted is None or task.variant in wanted
    ]
