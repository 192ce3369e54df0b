"""Importing the recipe layer stays light: no heavy library, no file read."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "paramiko", "googleapiclient", "dagster")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout))


def test_recipe_hardware_and_tasks_import_no_heavy_library():
    loaded = _modules_after(
        "import deplodock_dagster.recipe, deplodock_dagster.hardware, "
        "deplodock_dagster.bench.tasks, deplodock_dagster.cli.recipes"
    )
    assert "deplodock_dagster.recipe.loader" in loaded  # the import did happen
    for name in HEAVY:
        assert not {module for module in loaded if module.split(".")[0] == name}, name
    assert "yaml" not in loaded  # PyYAML only when a recipe is read


def test_loading_a_recipe_still_imports_no_heavy_library():
    loaded = _modules_after(
        "from deplodock_dagster.recipe import load_recipe, RECIPES_DIR\n"
        "load_recipe(RECIPES_DIR / 'GLM-4.6-FP8')"
    )
    assert "yaml" in loaded
    for name in HEAVY:
        assert not {module for module in loaded if module.split(".")[0] == name}, name
