"""ExecutionGroup labels: readable, safe characters, unique per GPU, count and model."""

import re

from deplodock_dagster.planner import ExecutionGroup


def _group(gpu_name: str, model_name: str, gpu_count: int = 8) -> ExecutionGroup:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class _Task:  # only model_name is read by the label
        model_name: str

    return ExecutionGroup(gpu_name=gpu_name, gpu_count=gpu_count, tasks=(_Task(model_name),))


def test_label_is_readable_and_safe():
    label = _group("NVIDIA H100 80GB", "zai-org/GLM-4.6-FP8").label
    assert label == "h100x8_zai_org_glm_4_6_fp8"


def test_gpus_sharing_a_short_name_get_different_labels():
    server = _group("NVIDIA RTX PRO 6000 Blackwell Server Edition", "org/m", 1).label
    workstation = _group("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "org/m", 1).label
    assert server != workstation
    assert "server" in server and "workstation" in workstation


def test_long_labels_are_cut_but_stay_unique():
    a = _group("NVIDIA H200 141GB", "org/" + "x" * 80 + "-a").label
    b = _group("NVIDIA H200 141GB", "org/" + "x" * 80 + "-b").label
    assert a != b
    for label in (a, b):
        assert len(label) <= 63 and re.fullmatch(r"[a-z0-9_]+", label)
