"""Task enumeration from real recipes, and the planner's grouping of those tasks."""

from __future__ import annotations

import pytest

from deplodock_dagster.bench.tasks import enumerate_tasks
from deplodock_dagster.errors import RecipeError
from deplodock_dagster.planner import GroupByModelAndGpuPlanner
from deplodock_dagster.recipe import RECIPES_DIR, find_recipes
from tests.recipe_helpers import base, write_recipe

GLM = RECIPES_DIR / "GLM-4.6-FP8"
QWEN_480B = RECIPES_DIR / "Qwen3-Coder-480B-A35B-Instruct-AWQ"
GLM_AIR = RECIPES_DIR / "GLM-4.5-Air-AWQ-4bit"


def test_every_variant_and_sweep_point_becomes_a_task():
    tasks = enumerate_tasks(find_recipes(RECIPES_DIR))
    assert len(tasks) == 30
    assert len({task.task_id for task in tasks}) == 30
    assert all(task.gpu_device_ids is None for task in tasks)
    assert tasks[0].task_id == "GLM-4.5-Air-AWQ-4bit/8xH100/max_concurrency=64,num_prompts=256"


def test_variant_filter_keeps_named_variants_across_recipes():
    tasks = enumerate_tasks([GLM, QWEN_480B, RECIPES_DIR / "tiny-cpu"], variants=["8xH200"])
    assert [task.task_id for task in tasks] == [
        "GLM-4.6-FP8/8xH200",
        "Qwen3-Coder-480B-A35B-Instruct-AWQ/8xH200",
    ]


def test_unknown_variant_lists_the_available_ones():
    with pytest.raises(RecipeError) as caught:
        enumerate_tasks([GLM], variants=["8xH200", "16xH200"])
    assert caught.value.path == str(GLM / "recipe.yaml")
    assert caught.value.field == "variants"
    assert "unknown variant 16xH200" in str(caught.value)
    assert "available: 8xH200, 8xB200, 8xH100, 8xPro6000" in str(caught.value)


def test_a_bad_recipe_stops_enumeration(tmp_path):
    data = base()
    data["variants"]["2xH100"]["gpu"] = "H900"
    bad = write_recipe(tmp_path, data).parent
    with pytest.raises(RecipeError, match="unknown GPU"):
        enumerate_tasks([GLM, bad])


def test_planner_groups_by_model_and_gpu_largest_first_with_device_ids():
    tasks = enumerate_tasks([GLM, QWEN_480B])
    groups = GroupByModelAndGpuPlanner().plan(tasks)

    by_label = {group.label: group for group in groups}
    assert sorted(by_label) == sorted([
        "h200x8_zai_org_glm_4_6_fp8",
        "b200x8_zai_org_glm_4_6_fp8",
        "h100x8_zai_org_glm_4_6_fp8",
        "pro6000_serverx8_zai_org_glm_4_6_fp8",
        "h200x8_quanttrio_qwen3_coder_480b_a35b_instruct_awq",
        "h100x8_quanttrio_qwen3_coder_480b_a35b_instruct_awq",
        "pro6000_workstationx8_quanttrio_qwen3_coder_480b_a35b_56caadd1",
    ])
    assert sum(len(group.tasks) for group in groups) == len(tasks)

    # Qwen 480B on H200: 8 and 4 GPUs share one 8-GPU VM; the 8-GPU task runs first and the
    # 4-GPU task is pinned to the first four devices.
    qwen_h200 = by_label["h200x8_quanttrio_qwen3_coder_480b_a35b_instruct_awq"]
    assert qwen_h200.gpu_count == 8
    assert [task.recipe.variant for task in qwen_h200.tasks] == ["8xH200", "4xH200"]
    assert [task.gpu_device_ids for task in qwen_h200.tasks] == [None, (0, 1, 2, 3)]


def test_planner_keeps_a_sweep_on_one_vm_in_file_order():
    groups = GroupByModelAndGpuPlanner().plan(enumerate_tasks([GLM_AIR], variants=["8xH200"]))
    (group,) = groups
    assert group.gpu_name == "NVIDIA H200 141GB"
    assert [task.recipe.benchmark.max_concurrency for task in group.tasks] == [64, 256, 512, 2048]
    assert all(task.gpu_device_ids is None for task in group.tasks)


def test_pro6000_editions_are_planned_on_different_machines():
    tasks = enumerate_tasks([RECIPES_DIR / "Qwen3-Coder-30B-A3B-Instruct-AWQ", GLM],
                            variants=["1xPro6000", "8xPro6000"])
    groups = GroupByModelAndGpuPlanner().plan(tasks)
    assert {(group.gpu_name, group.gpu_count) for group in groups} == {
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", 1),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", 8),
    }
