"""`deplodock recipes ...` as a user runs it: real subprocesses, no traceback on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.recipe_helpers import base, write_recipe

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deplodock_dagster.cli", "recipes", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def test_validate_bad_folder_prints_each_error_without_traceback(tmp_path):
    bad = tmp_path / "bad"
    broken = base()
    broken["variants"]["2xH100"]["backend"] = {"vllm": {"extra_args": "--max-num-seqs 512"}}
    broken["variants"]["8xH900"] = {"gpu": "H900", "gpu_count": 8}
    first = write_recipe(bad, broken, name="one")
    typo = base()
    typo["benchmark"]["num_promts"] = 3
    second = write_recipe(bad, typo, name="two")
    write_recipe(bad, base(), name="three")

    result = _cli("validate", "bad/", cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert (
        f"deplodock: error: {first.relative_to(tmp_path)}: "
        "variants.2xH100.backend.vllm.extra_args[0]: "
        "--max-num-seqs has a named field"
    ) in lines[0]
    assert (
        f"deplodock: error: {first.relative_to(tmp_path)}: variants.8xH900.gpu: "
        "unknown GPU 'H900'"
    ) in lines[1]
    assert f"deplodock: error: {second.relative_to(tmp_path)}: benchmark.num_promts: " \
           "unknown key" in lines[2]
    assert "2 of 3 recipes have errors" in result.stderr
    assert "ok  bad/three/recipe.yaml" in result.stdout


def test_validate_invalid_yaml_file(tmp_path):
    file = write_recipe(tmp_path, "model: {name: [\n")
    result = _cli("validate", str(file))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"deplodock: error: {file}: (yaml): invalid YAML at line" in result.stderr


def test_validate_missing_path_is_a_clean_error(tmp_path):
    result = _cli("validate", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no such recipe folder or file" in result.stderr


def test_validate_shipped_recipes_passes():
    result = _cli("validate")
    assert result.returncode == 0, result.stderr
    assert "GLM-4.6-FP8/recipe.yaml: 4 variants, 4 tasks" in result.stdout


def test_list_shows_variants_and_gpus():
    result = _cli("list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0][:3] == ["RECIPE", "VARIANT", "GPU"]
    assert ["GLM-4.6-FP8", "8xB200", "b200", "8", "vllm", "1", "1"] in rows
    assert ["GLM-4.5-Air-AWQ-4bit", "8xH200", "h200", "8", "vllm", "8", "4"] in rows
    assert ["Meta-Llama-3.3-70B-Instruct-AWQ-INT4", "2xH100-sglang", "h100", "2", "sglang",
            "1", "1"] in rows


def test_show_prints_resolved_json_for_a_named_recipe():
    import json

    result = _cli("show", "GLM-4.6-FP8", "--variant", "8xB200")
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(result.stdout)
    assert task["task_id"] == "GLM-4.6-FP8/8xB200"
    assert task["engine"]["extra_args"][-1] == "--enable-expert-parallel"


def test_show_unknown_variant_lists_available():
    result = _cli("show", "tiny-cpu", "--variant", "gpu")
    assert result.returncode == 2
    assert "unknown variant 'gpu' (available: cpu)" in result.stderr
    assert "Traceback" not in result.stderr
