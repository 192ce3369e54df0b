"""Property tests: whatever a recipe file holds, loading ends in success or a RecipeError.

Random YAML text, random structures (wrong types, huge numbers, NaN, unicode), and random
mutations of a valid recipe. Fixed seed (derandomize) and bounded example counts, so the
run is the same every time and quick.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deplodock_dagster.errors import RecipeError
from deplodock_dagster.recipe import load_recipe
from deplodock_dagster.recipe.validate import ARG_RE, ENV_NAME_RE, IMAGE_RE, MODEL_NAME_RE
from tests.recipe_helpers import base

SETTINGS = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([
        "8", "-1", "0.9", "NVIDIA H100 80GB", "h200", "cpu", "--max-num-seqs 4", "$(id)",
        "org/name", "vllm/vllm-openai:v0.11.0", "; rm -rf /", "\u202e\u0000", "日本語/モデル",
    ]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(list(base()))),
                        inner, max_size=4),
    ),
    max_leaves=12,
)

PATHS = [
    "model", "model.name", "backend", "backend.vllm", "backend.vllm.image",
    "backend.vllm.tensor_parallel_size", "backend.vllm.max_model_len",
    "backend.vllm.extra_args", "backend.vllm.gpu_memory_utilization", "backend.sglang",
    "benchmark", "benchmark.max_concurrency", "benchmark.num_prompts",
    "benchmark.random_input_len", "variants", "variants.2xH100", "variants.2xH100.gpu",
    "variants.2xH100.gpu_count", "variants.2xH100.backend", "matrices", "extra_env",
    "extra_env.X", "runtime", "unknown",
]


def _load_text(text: str):
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "prop" / "recipe.yaml"
        file.parent.mkdir()
        file.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            recipe = load_recipe(file.parent)
        except RecipeError as error:
            assert error.path == str(file)
            assert error.field
            assert str(error).startswith(f"{file}: ")
            return None
    _check_safe(recipe)
    return recipe


def _check_safe(recipe) -> None:
    """Whatever loads is safe to use: strict names, argv words, positive whole instances."""
    for task in recipe.tasks:
        assert MODEL_NAME_RE.match(task.model_name)
        assert IMAGE_RE.match(task.engine.image)
        assert all(ARG_RE.match(arg) for arg in task.engine.extra_args)
        assert all(ENV_NAME_RE.match(name) and "\n" not in value
                   for name, value in task.engine.extra_env)
        assert task.gpu_count >= 1 and task.gpu_count % task.engine.gpus_per_instance == 0
        assert task.benchmark.num_prompts >= 1
        memory = task.engine.gpu_memory_utilization
        assert memory is None or (math.isfinite(memory) and 0 < memory <= 1)


def _dump(data) -> str | None:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return None


@SETTINGS
@given(st.text(max_size=400))
def test_random_text(text):
    _load_text(text)


@SETTINGS
@given(st.lists(st.sampled_from(
    ["model:", " name:", "  - ", "{", "}", "[", "]", "&a", "*a", "!!python/object", ":",
     "variants:", "  8xH100:", "    gpu: h100", "    gpu_count: 8", "\n", "  ", "'", '"',
     "benchmark: {max_concurrency: 1}", "%YAML 1.2", "---", "...", "? ", "|", ">", "#"]),
    max_size=30))
def test_random_yaml_fragments(parts):
    _load_text("".join(parts))


@SETTINGS
@given(values)
def test_random_structures(data):
    text = _dump(data)
    if text is not None:
        _load_text(text)


def _replace(data: dict, dotted: str, value) -> dict:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
    return data


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=3))
def test_mutated_valid_recipe(changes):
    data = base()
    for dotted, value in changes:
        data = _replace(data, dotted, value)
    text = _dump(data)
    if text is not None:
        _load_text(text)


@SETTINGS
@given(st.lists(st.sampled_from(PATHS[:-1]), min_size=1, max_size=4))
def test_missing_fields(paths):
    data = base()
    for dotted in paths:
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    _load_text(yaml.safe_dump(data))


@SETTINGS
@given(st.text(min_size=1, max_size=40))
def test_any_string_in_a_shell_facing_field_is_refused_or_safe(payload):
    for dotted in ("model.name", "backend.vllm.image", "backend.vllm.extra_args",
                   "extra_env.X", "variants.2xH100.gpu"):
        data = _replace(base(), dotted, payload)
        text = _dump(data)
        if text is not None:
            _load_text(text)


def test_the_unmutated_base_loads():
    assert _load_text(yaml.safe_dump(base())) is not None
