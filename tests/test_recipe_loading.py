"""Loading recipes: the shipped ones, deep merge, engine switches, matrices, defaults."""

from __future__ import annotations

import pytest

from deplodock_dagster.recipe import (
    RECIPES_DIR,
    default_recipes_dir,
    find_recipes,
    load_recipe,
    resolve_variant,
)
from deplodock_dagster.recipe.loader import deep_merge, merge_variant
from deplodock_dagster.recipe.validate import DEFAULT_IMAGES
from tests.recipe_helpers import base, write_recipe

SHIPPED = {
    "GLM-4.6-FP8": "zai-org/GLM-4.6-FP8",
    "GLM-4.5-Air-AWQ-4bit": "cpatonn/GLM-4.5-Air-AWQ-4bit",
    "Qwen3-Coder-480B-A35B-Instruct-AWQ": "QuantTrio/Qwen3-Coder-480B-A35B-Instruct-AWQ",
    "Qwen3-Coder-30B-A3B-Instruct-AWQ": "QuantTrio/Qwen3-Coder-30B-A3B-Instruct-AWQ",
    "Meta-Llama-3.3-70B-Instruct-AWQ-INT4": "ibnzterrell/Meta-Llama-3.3-70B-Instruct-AWQ-INT4",
    "tiny-cpu": "deplodock/tiny-llama",
}


def _by_variant(recipe_name: str) -> dict:
    recipe = load_recipe(RECIPES_DIR / recipe_name)
    return {task.variant: task for task in recipe.tasks}


# ---------------------------------------------------------------- shipped recipes

def test_find_recipes_lists_every_shipped_folder_sorted():
    found = find_recipes(RECIPES_DIR)
    assert [path.name for path in found] == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_recipe_loads(name):
    recipe = load_recipe(RECIPES_DIR / name)
    assert recipe.name == name
    assert recipe.model_name == SHIPPED[name]
    assert recipe.tasks
    for task in recipe.tasks:
        assert task.gpu_count % task.engine.gpus_per_instance == 0
        assert ":" in task.engine.image  # pinned
        assert task.task_id.startswith(f"{name}/{task.variant}")


def test_glm_46_variants_match_the_issue():
    tasks = _by_variant("GLM-4.6-FP8")
    assert list(tasks) == ["8xH200", "8xB200", "8xH100", "8xPro6000"]
    h200, b200, h100, pro = (tasks[name] for name in tasks)
    assert h200.engine.tensor_parallel_size == 8
    assert h200.engine.max_model_len == 16384
    assert (h200.engine.max_num_seqs, h100.engine.max_num_seqs) == (512, 256)
    assert h200.engine.extra_args == ("--kv-cache-dtype", "fp8")
    assert b200.engine.extra_args == ("--kv-cache-dtype", "fp8", "--enable-expert-parallel")
    assert (h200.benchmark.max_concurrency, h200.benchmark.num_prompts) == (256, 512)
    assert (h100.benchmark.max_concurrency, h100.benchmark.num_prompts) == (128, 256)
    assert (pro.benchmark.max_concurrency, pro.benchmark.num_prompts) == (64, 128)
    assert (h100.benchmark.random_input_len, h100.benchmark.random_output_len) == (8000, 8000)
    assert pro.gpu_name == "NVIDIA RTX PRO 6000 Blackwell Server Edition"
    assert b200.gpu_name == "NVIDIA B200"


def test_qwen_30b_runs_on_single_gpus():
    tasks = _by_variant("Qwen3-Coder-30B-A3B-Instruct-AWQ")
    assert {task.gpu_name for task in tasks.values()} == {
        "NVIDIA GeForce RTX 4090",
        "NVIDIA GeForce RTX 5090",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "NVIDIA L40S",
    }
    for task in tasks.values():
        assert task.gpu_count == 1
        assert task.engine.max_model_len == 8192
        assert (task.benchmark.random_input_len, task.benchmark.random_output_len) == (
            4000, 4000,
        )


def test_llama_uses_two_pipeline_stages_and_has_an_sglang_variant():
    tasks = _by_variant("Meta-Llama-3.3-70B-Instruct-AWQ-INT4")
    assert tasks["2xH100"].engine.pipeline_parallel_size == 2
    assert tasks["8xH100"].num_instances == 4
    sglang = tasks["2xH100-sglang"].engine
    assert sglang.engine == "sglang"
    assert sglang.image.startswith("lmsysorg/sglang:")
    assert sglang.pipeline_parallel_size == 2  # carried over from the vllm base
    assert sglang.max_model_len == 8192
    assert sglang.gpu_memory_utilization == 0.85  # the variant's own value wins


def test_glm_air_sweeps_concurrency_through_matrices():
    recipe = load_recipe(RECIPES_DIR / "GLM-4.5-Air-AWQ-4bit")
    h200 = [task for task in recipe.tasks if task.variant == "8xH200"]
    assert [task.benchmark.max_concurrency for task in h200] == [64, 256, 512, 2048]
    assert [task.benchmark.num_prompts for task in h200] == [256, 1024, 2048, 2048]
    assert h200[0].sweep_label == "max_concurrency=64,num_prompts=256"
    assert len({task.task_id for task in recipe.tasks}) == len(recipe.tasks) == 12


def test_tiny_cpu_recipe():
    (task,) = resolve_variant(RECIPES_DIR / "tiny-cpu", "cpu")
    assert task.gpu_name == "CPU"
    assert task.runtime == "process"
    assert task.engine.max_model_len == 512
    assert dict(task.engine.extra_env)["VLLM_TARGET_DEVICE"] == "cpu"
    assert (task.benchmark.num_prompts, task.benchmark.max_concurrency) == (32, 8)
    assert (task.benchmark.random_input_len, task.benchmark.random_output_len) == (64, 32)


def test_recipes_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLODOCK_RECIPES_DIR", str(tmp_path))
    assert default_recipes_dir() == tmp_path
    write_recipe(tmp_path, base(), name="one")
    assert find_recipes() == [tmp_path / "one"]


# ---------------------------------------------------------------- merging

def test_deep_merge_merges_mappings_and_replaces_lists_without_mutating():
    left = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    right = {"a": {"c": [3], "e": {"f": 2}}}
    merged = deep_merge(left, right)
    assert merged == {"a": {"b": 1, "c": [3], "e": {"f": 2}}, "d": 1}
    assert left == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged["a"]["e"]["f"] = 99
    assert right["a"]["e"]["f"] == 2


def test_variant_overrides_are_deep_merged(tmp_path):
    data = base()
    data["variants"]["4xH100"] = {
        "gpu": "h100",
        "gpu_count": 4,
        "backend": {"vllm": {"max_num_seqs": 64, "extra_args": ["--enforce-eager"]}},
        "benchmark": {"num_prompts": 99},
    }
    recipe = load_recipe(write_recipe(tmp_path, data).parent)
    first, second = recipe.tasks
    assert first.engine.max_num_seqs is None
    assert first.engine.extra_args == ("--kv-cache-dtype", "fp8")
    assert second.engine.max_num_seqs == 64
    assert second.engine.tensor_parallel_size == 2  # kept from the base
    assert second.engine.extra_args == ("--enforce-eager",)  # lists are replaced
    assert (second.benchmark.num_prompts, second.benchmark.max_concurrency) == (99, 8)
    assert second.num_instances == 2


def test_variant_switching_engine_keeps_only_named_settings():
    merged = merge_variant(
        {"backend": {"vllm": {"image": "vllm/vllm-openai:v0.11.0", "tensor_parallel_size": 4,
                              "extra_args": "--kv-cache-dtype fp8", "max_model_len": 8}}},
        {"backend": {"sglang": {"max_model_len": 16}}},
    )
    assert merged["backend"] == {"sglang": {"tensor_parallel_size": 4, "max_model_len": 16}}


def test_variant_naming_the_same_engine_merges_into_it():
    merged = merge_variant(
        {"backend": {"vllm": {"image": "vllm/vllm-openai:v0.11.0", "max_num_seqs": 4}}},
        {"backend": {"vllm": {"max_num_seqs": 8}}},
    )
    assert merged["backend"] == {"vllm": {"image": "vllm/vllm-openai:v0.11.0",
                                          "max_num_seqs": 8}}


def test_default_images_are_pinned(tmp_path):
    data = base()
    del data["backend"]["vllm"]["image"]
    data["variants"]["sg"] = {"gpu": "h100", "gpu_count": 2, "backend": {"sglang": None}}
    first, second = load_recipe(write_recipe(tmp_path, data).parent).tasks
    assert first.engine.image == DEFAULT_IMAGES["vllm"] == "vllm/vllm-openai:v0.11.0"
    assert second.engine.image == DEFAULT_IMAGES["sglang"]
    assert second.engine.tensor_parallel_size == 2


def test_extra_args_string_and_list_are_equivalent(tmp_path):
    data = base()
    data["backend"]["vllm"]["extra_args"] = "--speculative-config '{\"method\":\"ngram\"}' -O3"
    (task,) = load_recipe(write_recipe(tmp_path, data).parent).tasks
    assert task.engine.extra_args == ("--speculative-config", '{"method":"ngram"}', "-O3")
    data["backend"]["vllm"]["extra_args"] = ["--speculative-config", '{"method":"ngram"}', "-O3"]
    (same,) = load_recipe(write_recipe(tmp_path, data, name="other").parent).tasks
    assert same.engine.extra_args == task.engine.extra_args


def test_extra_env_from_base_and_engine_block(tmp_path):
    data = base()
    data["extra_env"] = {"A": 1, "B": "x"}
    data["backend"]["vllm"]["extra_env"] = {"B": "y"}
    (task,) = load_recipe(write_recipe(tmp_path, data).parent).tasks
    assert task.engine.extra_env == (("A", "1"), ("B", "y"))
    assert task.to_dict()["engine"]["extra_env"] == {"A": "1", "B": "y"}


# ---------------------------------------------------------------- matrices

def test_matrices_zip_within_an_entry_and_concatenate_entries(tmp_path):
    data = base()
    data["matrices"] = [
        {"benchmark.max_concurrency": [1, 8], "benchmark.num_prompts": [4, 32]},
        {"benchmark": {"max_concurrency": [64]}, "backend.vllm.max_num_seqs": 128},
    ]
    recipe = load_recipe(write_recipe(tmp_path, data).parent)
    points = [
        (t.benchmark.max_concurrency, t.benchmark.num_prompts, t.engine.max_num_seqs)
        for t in recipe.tasks
    ]
    assert points == [(1, 4, None), (8, 32, None), (64, 16, 128)]
    assert [t.sweep_label for t in recipe.tasks] == [
        "max_concurrency=1,num_prompts=4",
        "max_concurrency=8,num_prompts=32",
        "max_concurrency=64,max_num_seqs=128",
    ]
    assert recipe.tasks[0].task_id == "demo/2xH100/max_concurrency=1,num_prompts=4"
    assert recipe.tasks[2].to_dict()["sweep"] == {"max_concurrency": "64",
                                                  "max_num_seqs": "128"}


def test_matrices_apply_to_every_variant_and_a_variant_may_replace_them(tmp_path):
    data = base()
    data["matrices"] = [{"benchmark.max_concurrency": [1, 2]}]
    data["variants"]["4xH100"] = {
        "gpu": "h100", "gpu_count": 4,
        "matrices": [{"benchmark.random_input_len": [10, 20, 30]}],
    }
    recipe = load_recipe(write_recipe(tmp_path, data).parent)
    by_variant = {}
    for task in recipe.tasks:
        by_variant.setdefault(task.variant, []).append(task.sweep_label)
    assert by_variant == {
        "2xH100": ["max_concurrency=1", "max_concurrency=2"],
        "4xH100": ["random_input_len=10", "random_input_len=20", "random_input_len=30"],
    }
    assert recipe.variants == ("2xH100", "4xH100")


def test_matrices_can_sweep_extra_args_with_lists_of_lists(tmp_path):
    data = base()
    data["matrices"] = [{"backend.vllm.extra_args": [["--enforce-eager"], "-O3"]}]
    first, second = load_recipe(write_recipe(tmp_path, data).parent).tasks
    assert first.engine.extra_args == ("--enforce-eager",)
    assert second.engine.extra_args == ("-O3",)
    assert first.sweep_label == "extra_args=--enforce-eager"


def test_the_example_in_recipes_readme_loads(tmp_path):
    text = (RECIPES_DIR / "README.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    recipe = load_recipe(write_recipe(tmp_path, example, name="example").parent)
    engines = {task.variant: task.engine.engine for task in recipe.tasks}
    assert engines == {"8xH200": "vllm", "8xH200-sglang": "sglang"}
    assert len(recipe.tasks) == 6  # 2 variants x 3 sweep points


def test_every_shipped_task_serialises_to_json():
    import json

    for path in find_recipes(RECIPES_DIR):
        for task in load_recipe(path).tasks:
            data = json.loads(json.dumps(task.to_dict()))
            assert data["task_id"] == task.task_id
            assert data["gpu_name"] == task.gpu_name
