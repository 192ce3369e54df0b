"""`deplodock recipes`: list, check and show recipes without deploying anything.

    deplodock recipes list [--dir DIR]              names, variants, GPUs, sweep points
    deplodock recipes validate [PATH...]            check recipes; one error line per bad one
    deplodock recipes show PATH [--variant NAME]    the resolved tasks as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deplodock_dagster.errors import ConfigError, RecipeError
from deplodock_dagster.recipe import (
    RECIPE_FILE,
    check_recipe,
    default_recipes_dir,
    find_recipes,
    load_recipe,
    resolve_variant,
)


def register(subparsers) -> None:
    """Add the `recipes` subcommand and its actions."""
    parser = subparsers.add_parser(
        "recipes",
        help="list, validate and show recipes",
        description=(
            "Recipes live in recipes/<name>/recipe.yaml (or $DEPLODOCK_RECIPES_DIR). "
            "Nothing here deploys or rents anything."
        ),
    )
    actions = parser.add_subparsers(dest="recipes_command", metavar="ACTION")
    actions.required = True

    list_parser = actions.add_parser("list", help="recipes with their variants and GPUs")
    list_parser.add_argument("--dir", type=Path, help="recipes folder (default: recipes/)")
    list_parser.set_defaults(func=run_list)

    validate = actions.add_parser(
        "validate",
        help="check recipes and print every error",
        description=(
            "Load and fully resolve each recipe (every variant and sweep point). PATH is a "
            "recipe folder, a recipe file, or a folder of recipe folders; default: all. "
            "Exits 2 if any recipe is wrong."
        ),
    )
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    validate.set_defaults(func=run_validate)

    show = actions.add_parser("show", help="print a recipe's resolved tasks as JSON")
    show.add_argument("path", type=Path, metavar="PATH", help="recipe folder or file, or a name")
    show.add_argument("--variant", help="only this variant")
    show.set_defaults(func=run_show)


def _expand(paths: list[Path]) -> list[Path]:
    """Recipe folders or files named by PATH arguments (folders of recipes expanded)."""
    if not paths:
        return find_recipes(default_recipes_dir())
    found: list[Path] = []
    for path in paths:
        if path.is_file() or (path / RECIPE_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            inner = find_recipes(path)
            if not inner:
                raise ConfigError(f"{path}: no {RECIPE_FILE} in it or in its sub-folders")
            found.extend(inner)
        else:
            found.append(_by_name(path))
    return found


def _by_name(path: Path) -> Path:
    """A bare name like GLM-4.6-FP8 means that folder under the recipes dir."""
    candidate = default_recipes_dir() / path
    if len(path.parts) == 1 and (candidate / RECIPE_FILE).is_file():
        return candidate
    raise ConfigError(f"{path}: no such recipe folder or file")


def run_list(args: argparse.Namespace) -> int:
    """Print one line per variant: recipe, variant, GPUs, engine, sweep points."""
    from deplodock_dagster.hardware import gpu_short_name

    root = args.dir or default_recipes_dir()
    rows = [("RECIPE", "VARIANT", "GPU", "COUNT", "ENGINE", "INSTANCES", "POINTS")]
    problems = 0
    for path in find_recipes(root):
        try:
            recipe = load_recipe(path)
        except RecipeError as error:
            print(f"deplodock: error: {error}", file=sys.stderr)
            problems += 1
            continue
        for variant in recipe.variants:
            tasks = [task for task in recipe.tasks if task.variant == variant]
            first = tasks[0]
            rows.append((
                recipe.name, variant, gpu_short_name(first.gpu_name), str(first.gpu_count),
                first.engine.engine, str(first.num_instances), str(len(tasks)),
            ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 2 if problems else 0


def run_validate(args: argparse.Namespace) -> int:
    """Load every recipe; print `ok` lines to stdout and each error to stderr."""
    failed = 0
    paths = _expand(list(args.paths))
    for path in paths:
        errors = check_recipe(path)
        if errors:
            for error in errors:
                print(f"deplodock: error: {error}", file=sys.stderr)
            failed += 1
            continue
        recipe = load_recipe(path)
        print(
            f"ok  {recipe.path}: {len(recipe.variants)} variants, {len(recipe.tasks)} tasks"
        )
    if failed:
        print(f"{failed} of {len(paths)} recipes have errors", file=sys.stderr)
        return RecipeError.exit_code
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the resolved tasks of one recipe (or one variant) as JSON."""
    (path,) = _expand([args.path])
    tasks = resolve_variant(path, args.variant) if args.variant else load_recipe(path).tasks
    json.dump([task.to_dict() for task in tasks], sys.stdout, indent=2)
    print()
    return 0
