"""Read recipe.yaml files and resolve them into typed ResolvedRecipe objects.

A recipe file has a base (model, backend, benchmark, extra_env, runtime), `variants` named
like `8xH200` that carry `gpu`, `gpu_count` and any override, and optional `matrices`:

- A variant is deep-merged over the base: mappings merge key by key, everything else
  (lists included, so `extra_args`) is replaced.
- A variant whose `backend` names another engine than the base (`backend: {sglang: {...}}`
  over a vllm base) switches engine: the base's engine block is dropped, except the named,
  engine-neutral settings (parallel sizes, gpu_memory_utilization, max_model_len,
  max_num_seqs), which carry over unless the variant sets them. The image, extra_args and
  the engine's own extra_env do not carry over: they belong to one engine.
- `matrices` is a list of entries; keys are dotted paths (`benchmark.max_concurrency`) or
  nested mappings. In one entry every list value is a sweep dimension and the lists are
  zipped (so they must have the same length); scalar values apply to every point of the
  entry. Entries are concatenated. To sweep a list-valued field such as extra_args, give a
  list of lists. A variant may set its own `matrices`, which replaces the base's.

Each variant and sweep point becomes one ResolvedRecipe; `sweep` records the point.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from deplodock_dagster.errors import ConfigError, RecipeError
from deplodock_dagster.recipe.types import ENGINES, Recipe, ResolvedRecipe
from deplodock_dagster.recipe.validate import (
    NAMED_ENGINE_FIELDS,
    VARIANT_KEYS,
    build_resolved,
    check_variant_name,
    describe,
    key_name,
)

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
TOP_LEVEL_KEYS = (*VARIANT_KEYS, "variants", "matrices")
MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000  # YAML aliases can make a small file a huge (or endless) structure
MAX_DEPTH = 32
MAX_SWEEP_POINTS = 1_000
RECIPE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def default_recipes_dir() -> Path:
    """DEPLODOCK_RECIPES_DIR if set, else the repository's recipes/ folder."""
    configured = os.environ.get("DEPLODOCK_RECIPES_DIR")
    return Path(configured) if configured else _REPO_RECIPES


RECIPES_DIR = default_recipes_dir()


def recipe_file(path: str | os.PathLike) -> Path:
    """The recipe.yaml for a recipe folder, or the path itself when it is a file."""
    path = Path(path)
    if path.is_dir():
        path = path / RECIPE_FILE
    if not path.is_file():
        raise RecipeError(
            str(path), "(file)", "not found", f"expected a folder holding {RECIPE_FILE}"
        )
    return path


def recipe_name_for(path: Path) -> str:
    """A recipe's name: its folder for recipe.yaml, else the file's stem."""
    return path.parent.name if path.name == RECIPE_FILE else path.stem


def find_recipes(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders directly under `root` (default: default_recipes_dir()) holding recipe.yaml."""
    root = Path(root) if root is not None else default_recipes_dir()
    if not root.is_dir():
        raise ConfigError(f"recipes folder {root} does not exist")
    return sorted(child for child in root.iterdir() if (child / RECIPE_FILE).is_file())


def read_recipe_file(path: Path) -> dict:
    """Parse the YAML of one recipe file into a plain mapping, or raise RecipeError."""
    import yaml

    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RecipeError(where, "(file)", f"cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise RecipeError(where, "(file)", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecipeError(where, "(file)", f"not UTF-8 text: {error.reason}") from None

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError(where, "(yaml)", f"invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise RecipeError(where, "(yaml)", "nested too deeply") from None
    except Exception as error:  # noqa: BLE001 - e.g. a 5000-digit integer; report, never crash
        raise RecipeError(where, "(yaml)", f"cannot parse: {type(error).__name__}") from None

    _check_size(where, raw)
    if raw is None:
        raise RecipeError(where, "(file)", "empty", "expected model, backend, benchmark, variants")
    if not isinstance(raw, dict):
        raise RecipeError(
            where, "(top level)", f"expected a mapping, got {describe(raw)}",
            f"allowed keys: {', '.join(TOP_LEVEL_KEYS)}",
        )
    return raw


def _check_size(where: str, raw: object) -> None:
    """Refuse structures that aliases blew up (or made recursive), or nested absurdly deep."""
    stack, seen = [(raw, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise RecipeError(
                where, "(yaml)", f"more than {MAX_NODES} values (aliases expanding, or recursive)"
            )
        if depth > MAX_DEPTH:
            raise RecipeError(
                where, "(yaml)", f"nested more than {MAX_DEPTH} levels deep, or recursive"
            )
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in (*node.keys(), *node.values()))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, depth + 1) for child in node)


def deep_merge(base: object, override: object) -> object:
    """`override` over `base`: mappings merge key by key; anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def merge_variant(base: dict, variant: Mapping) -> dict:
    """A variant over the base, with the engine-switch rule of the module docstring."""
    base_backend = base.get("backend")
    variant_backend = variant.get("backend")
    if (
        isinstance(base_backend, Mapping)
        and isinstance(variant_backend, Mapping)
        and variant_backend
        and not set(base_backend) & set(variant_backend)
        and set(variant_backend) <= set(ENGINES)
    ):
        carried: dict = {}
        for settings in base_backend.values():
            if isinstance(settings, Mapping):
                carried.update(
                    {key: settings[key] for key in NAMED_ENGINE_FIELDS if key in settings}
                )
        switched = {
            name: deep_merge(carried, settings if settings is not None else {})
            for name, settings in variant_backend.items()
        }
        base = {**base, "backend": switched}
        variant = {key: value for key, value in variant.items() if key != "backend"}
    return deep_merge(base, variant)


def _flatten(entry: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in entry.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def expand_matrices(
    where: str, field: str, matrices: object
) -> list[tuple[int, dict[str, object]]]:
    """Sweep points in file order as (entry index, {dotted key: value}); [] means none."""
    if matrices is None:
        return []
    if not isinstance(matrices, list):
        raise RecipeError(where, field, f"expected a list of mappings, got {describe(matrices)}")
    points: list[tuple[int, dict[str, object]]] = []
    for index, entry in enumerate(matrices):
        entry_field = f"{field}[{index}]"
        if not isinstance(entry, Mapping) or not entry:
            raise RecipeError(
                where, entry_field, f"expected a non-empty mapping, got {describe(entry)}",
                "e.g. benchmark.max_concurrency: [1, 8, 32]",
            )
        for key in entry:
            if not isinstance(key, str):
                raise RecipeError(where, entry_field, f"key {describe(key)} is not a string")
        flat = _flatten(entry)
        for key in flat:
            parts = key.split(".")
            if not all(parts) or parts[0] not in VARIANT_KEYS or parts[0] == "gpu":
                allowed = ", ".join(k for k in VARIANT_KEYS if k != "gpu")
                raise RecipeError(
                    where, f"{entry_field}.{key}", "not a field that can be swept",
                    f"use a dotted path under {allowed}",
                )
        lists = {key: value for key, value in flat.items() if isinstance(value, list)}
        lengths = {len(value) for value in lists.values()}
        if len(lengths) > 1:
            shown = ", ".join(f"{key} has {len(value)}" for key, value in lists.items())
            raise RecipeError(
                where, entry_field,
                f"lists in one entry are zipped and must be equally long: {shown}",
                "split them into separate entries to sweep them independently",
            )
        if lengths == {0}:
            raise RecipeError(where, entry_field, "empty list: nothing to sweep")
        count = lengths.pop() if lengths else 1
        if len(points) + count > MAX_SWEEP_POINTS:
            raise RecipeError(where, field, f"more than {MAX_SWEEP_POINTS} sweep points")
        for position in range(count):
            point = {key: value[position] if key in lists else value for key, value in flat.items()}
            points.append((index, point))
    return points


def _set_dotted(config: dict, dotted: str, value: object) -> bool:
    """Set a dotted path in nested mappings; False if a step is not a mapping."""
    node = config
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            return False
        node = child
    node[last] = copy.deepcopy(value)
    return True


def _sweep_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    return json.dumps(value, sort_keys=True, default=str)


def _sweep_items(point: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """(name, value) for a point: the last part of each key, the full key where ambiguous."""
    lasts = [key.rsplit(".", 1)[-1] for key in point]
    return tuple(
        (last if lasts.count(last) == 1 else key, _sweep_value(value))
        for key, last, value in zip(point, lasts, point.values())
    )


def _has_path(data: object, dotted: str) -> bool:
    node = data
    for part in dotted.split("."):
        part = part.split("[", 1)[0]
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _locator(variant: str, variant_raw: Mapping, matrix_field: str | None, point: Mapping):
    """Maps a field of the merged mapping to where the recipe wrote it."""

    def locate(field: str) -> str:
        for key in point:
            if field == key or field.startswith(f"{key}.") or field.startswith(f"{key}["):
                return f"{matrix_field}.{field}"
        if field and _has_path(variant_raw, field):
            return f"variants.{variant}.{field}"
        return field

    return locate


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Load and fully check one recipe (a folder holding recipe.yaml, or a yaml file).

    Every variant and sweep point is resolved, so any error surfaces here as RecipeError.
    """
    return _load(path, None)


def check_recipe(path: str | os.PathLike) -> list[RecipeError]:
    """Every error in a recipe, one per field (a bad variant does not hide the next one).

    An empty list means `load_recipe` succeeds. Errors in the file as a whole (unreadable,
    unknown top-level key) stop the check, since nothing after them can be trusted.
    """
    errors: list[RecipeError] = []
    try:
        _load(path, errors)
    except RecipeError as error:
        errors.append(error)
    unique: dict[str, RecipeError] = {}
    for error in errors:
        unique.setdefault(error.field, error)  # a base error repeats in every variant
    return list(unique.values())


def _load(path: str | os.PathLike, errors: list[RecipeError] | None) -> Recipe:
    """load_recipe; with `errors`, variant errors are appended there instead of raised."""
    file = recipe_file(path)
    where = str(file)
    name = recipe_name_for(file)
    if not RECIPE_NAME_RE.match(name):
        raise RecipeError(
            where, "(recipe name)", f"invalid recipe name {name!r}",
            "rename the folder to letters, digits and ._-",
        )
    raw = read_recipe_file(file)

    for key in raw:
        if not isinstance(key, str) or key not in TOP_LEVEL_KEYS:
            raise RecipeError(
                where, key_name(key), "unknown key", f"allowed: {', '.join(TOP_LEVEL_KEYS)}"
            )
    variants = raw.get("variants")
    if not isinstance(variants, Mapping) or not variants:
        raise RecipeError(
            where, "variants",
            "missing" if variants is None else f"expected a mapping, got {describe(variants)}",
            "expected variants named like 8xH200, each with gpu and gpu_count",
        )
    base = {key: value for key, value in raw.items() if key != "variants"}

    tasks: list[ResolvedRecipe] = []
    for variant_name, variant_raw in variants.items():
        try:
            tasks.extend(_resolve_variant(where, name, variant_name, base, variant_raw))
        except RecipeError as error:
            if errors is None:
                raise
            errors.append(error)

    if not tasks:  # only reachable when collecting errors
        raise errors[0] if errors else RecipeError(where, "variants", "no variant resolved")
    return Recipe(name=name, path=where, model_name=tasks[0].model_name, tasks=tuple(tasks))


def _resolve_variant(
    where: str, name: str, variant_name: object, base: dict, variant_raw: object
) -> list[ResolvedRecipe]:
    check_variant_name(where, variant_name)
    if variant_raw is None:
        variant_raw = {}
    if not isinstance(variant_raw, Mapping):
        raise RecipeError(
            where, f"variants.{variant_name}",
            f"expected a mapping, got {describe(variant_raw)}",
            "e.g. {gpu: NVIDIA H200 141GB, gpu_count: 8}",
        )
    for key in variant_raw:
        if not isinstance(key, str) or key not in (*VARIANT_KEYS, "matrices"):
            raise RecipeError(
                where, f"variants.{variant_name}.{key_name(key)}", "unknown key",
                f"allowed: {', '.join((*VARIANT_KEYS, 'matrices'))}",
            )
    return _resolve_points(where, name, variant_name, base, variant_raw)


def _resolve_points(
    where: str, name: str, variant: str, base: dict, variant_raw: Mapping
) -> list[ResolvedRecipe]:
    merged = merge_variant(base, variant_raw)
    matrices = merged.pop("matrices", None)
    matrix_field = f"variants.{variant}.matrices" if "matrices" in variant_raw else "matrices"
    points = expand_matrices(where, matrix_field, matrices)

    if not points:
        locate = _locator(variant, variant_raw, None, {})
        return [
            build_resolved(
                path=where, recipe_name=name, variant=variant, config=merged, locate=locate
            )
        ]

    resolved: list[ResolvedRecipe] = []
    seen: dict[str, int] = {}
    for index, (entry, point) in enumerate(points):
        entry_field = f"{matrix_field}[{entry}]"
        config = copy.deepcopy(merged)
        for key, value in point.items():
            if not _set_dotted(config, key, value):
                raise RecipeError(
                    where, f"{entry_field}.{key}",
                    "a part of this path is not a mapping in the recipe",
                )
        locate = _locator(variant, variant_raw, entry_field, point)
        recipe = build_resolved(
            path=where, recipe_name=name, variant=variant, config=config,
            sweep=_sweep_items(point), locate=locate,
        )
        if recipe.task_id in seen:
            raise RecipeError(
                where, matrix_field,
                f"sweep points {seen[recipe.task_id] + 1} and {index + 1} are the same "
                f"({recipe.sweep_label})",
                "remove the duplicate",
            )
        seen[recipe.task_id] = index
        resolved.append(recipe)
    return resolved


def resolve_variant(path: str | os.PathLike, variant: str) -> list[ResolvedRecipe]:
    """The resolved tasks (one per sweep point) of one variant; unknown variants raise."""
    recipe = load_recipe(path)
    tasks = [task for task in recipe.tasks if task.variant == variant]
    if not tasks:
        raise RecipeError(
            recipe.path, "variants", f"unknown variant {variant!r}",
            f"available: {', '.join(recipe.variants)}",
        )
    return tasks
