"""The code location loads, validates, does no I/O at import, and plans groups as expected."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from deplodock_dagster.orchestration.definitions import build_resources, defs
from deplodock_dagster.orchestration.jobs import partition_range_tags
from deplodock_dagster.orchestration.partitions import recipes_partitions

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def test_definitions_load_every_job_schedule_and_sensor():
    repo = defs.get_repository_def()
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {"benchmark_job", "deploy_local_job", "deploy_ssh_job", "deploy_cloud_job",
            "teardown_job", "vm_create_job", "vm_delete_job"} <= jobs
    assert {s.name for s in repo.schedule_defs} == {"nightly_benchmarks"}
    assert {s.name for s in repo.sensor_defs} == {
        "recipes_sensor", "delete_vms_of_failed_runs", "delete_vms_of_canceled_runs",
        "reconcile_vms_sensor",
    }
    schedule = repo.get_schedule_def("nightly_benchmarks")
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status.value == "RUNNING"


def test_dagster_definitions_validate_passes(tmp_path):
    # From a scratch folder: in the repository `dagster` would pick up the Postgres
    # dagster.yaml (tests/test_dagster_daemon.py covers that one).
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    result = subprocess.run(
        [str(Path(PYTHON).parent / "dagster"), "definitions", "validate",
         "-m", "deplodock_dagster.orchestration.definitions"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


IMPORT_PROBE = r"""
import builtins, json, socket, sys
opened, connected = [], []
real_open, real_connect = builtins.open, socket.socket.connect
def spy_open(file, *a, **k):
    opened.append(str(file)); return real_open(file, *a, **k)
def spy_connect(self, address):
    connected.append(str(address)); return real_connect(self, address)
builtins.open, socket.socket.connect = spy_open, spy_connect
import deplodock_dagster.orchestration.definitions  # noqa
builtins.open = real_open
mods = [m for m in ("paramiko", "googleapiclient", "pandas", "openpyxl") if m in sys.modules]
print(json.dumps({"opened": opened, "connected": connected, "heavy": mods}))
"""


def test_importing_the_code_location_does_no_io(tmp_path):
    env = {**os.environ, "DEPLODOCK_RECIPES_DIR": str(tmp_path / "no-such-dir")}
    out = subprocess.run([PYTHON, "-c", IMPORT_PROBE], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["connected"] == []
    recipe_reads = [path for path in seen["opened"] if "recipe" in path and path.endswith("yaml")]
    assert recipe_reads == []
    assert seen["heavy"] == []


def _write_recipe(root: Path, name: str, model: str, variants: dict) -> Path:
    import yaml

    folder = root / name
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump({
        "model": {"name": model},
        "backend": {"vllm": {"image": "vllm/vllm-openai:v0.11.0"}},
        "benchmark": {"max_concurrency": 4, "num_prompts": 8, "random_input_len": 32,
                      "random_output_len": 16},
        "variants": variants,
    }))
    return folder


@pytest.fixture
def gpu_recipes(tmp_path):
    root = tmp_path / "recipes"
    _write_recipe(root, "alpha", "org/Alpha-7B", {
        "1xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 1},
        "2xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 2},
        "1xL40S": {"gpu": "NVIDIA L40S", "gpu_count": 1},
    })
    _write_recipe(root, "beta", "org/Alpha-7B", {
        "4xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 4},
    })
    _write_recipe(root, "gamma", "org/Gamma-1B", {
        "1xL40S": {"gpu": "NVIDIA L40S", "gpu_count": 1},
    })
    return root


def _resources(recipes_root: Path, tmp_path: Path) -> dict:
    return build_resources(recipes_dir=str(recipes_root), results_dir=str(tmp_path / "results"),
                           reports_dir=str(tmp_path / "reports"))


def _messages(instance, result) -> list[str]:
    return [entry.user_message or "" for entry in instance.all_logs(result.run_id)]


def _dry_run(instance, recipes_root, tmp_path, first, last, variants=()):
    from deplodock_dagster.orchestration.assets import benchmark_results

    return materialize(
        [benchmark_results],
        instance=instance,
        resources=_resources(recipes_root, tmp_path),
        tags=partition_range_tags(first, last),
        run_config={"ops": {"benchmark_results": {"config": {
            "dry_run": True, "variants": list(variants)}}}},
        raise_on_error=False,
    )


def test_plan_shares_a_vm_across_recipes_and_names_groups_by_gpu_count_and_model(
        gpu_recipes, tmp_path):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(recipes_partitions.name, ["alpha", "beta", "gamma"])
    result = _dry_run(instance, gpu_recipes, tmp_path, "alpha", "gamma")
    assert result.success
    messages = _messages(instance, result)
    groups = sorted(m.split(":")[0].removeprefix("group ") for m in messages
                    if m.startswith("group "))
    # alpha and beta share one H100 VM (largest count: 4); L40S tasks of two models apart.
    assert groups == ["h100x4_org_alpha_7b", "l40sx1_org_alpha_7b", "l40sx1_org_gamma_1b"]
    assert any("planned 5 task(s) of 3 recipe(s) into 3 group(s)" in m for m in messages)
    # A dry run provisions nothing and materializes nothing.
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert not [e for e in result.all_events if (e.step_key or "").startswith(
        "benchmark_results.provision_vm")]


def test_variants_filter_and_unknown_variant_is_a_clear_failure(gpu_recipes, tmp_path):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(recipes_partitions.name, ["alpha", "beta"])
    result = _dry_run(instance, gpu_recipes, tmp_path, "alpha", "beta", variants=["1xL40S"])
    assert result.success
    messages = _messages(instance, result)
    assert any("planned 1 task(s) of 2 recipe(s) into 1 group(s)" in m for m in messages)

    bad = _dry_run(instance, gpu_recipes, tmp_path, "alpha", "beta", variants=["9xNONE"])
    assert not bad.success
    failure = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"][0]
    text = failure.event_specific_data.error.message
    assert "9xNONE" in text and "1xH100" in text  # names the bad one and lists the real ones


def test_missing_recipe_folder_fails_naming_it(gpu_recipes, tmp_path):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(recipes_partitions.name, ["alpha", "gone"])
    result = _dry_run(instance, gpu_recipes, tmp_path, "alpha", "gone")
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "gone" in failure.event_specific_data.error.message


def test_recipes_sensor_adds_new_and_drops_removed_folders(gpu_recipes, tmp_path):
    import shutil

    from deplodock_dagster.orchestration.sensors import recipes_sensor

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(recipes_partitions.name, ["alpha", "old-one"])
    resources = {"recipes": _resources(gpu_recipes, tmp_path)["recipes"]}
    with build_sensor_context(instance=instance, resources=resources) as context:
        result = recipes_sensor(context)
    requests = result.dynamic_partitions_requests
    added = [r for r in requests if type(r).__name__ == "AddDynamicPartitionsRequest"]
    removed = [r for r in requests if type(r).__name__ == "DeleteDynamicPartitionsRequest"]
    assert list(added[0].partition_keys) == ["beta", "gamma"]
    assert list(removed[0].partition_keys) == ["old-one"]

    instance.add_dynamic_partitions(recipes_partitions.name, ["beta", "gamma"])
    instance.delete_dynamic_partition(recipes_partitions.name, "old-one")
    with build_sensor_context(instance=instance, resources=resources) as context:
        again = recipes_sensor(context)
    assert type(again).__name__ == "SkipReason"

    shutil.rmtree(gpu_recipes / "gamma")
    with build_sensor_context(instance=instance, resources=resources) as context:
        third = recipes_sensor(context)
    assert [list(r.partition_keys) for r in third.dynamic_partitions_requests] == [["gamma"]]


def test_nightly_schedule_requests_one_run_over_every_partition():
    from datetime import datetime, timezone

    from dagster import build_schedule_context, instance_for_test

    from deplodock_dagster.orchestration.schedules import nightly_benchmarks

    when = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)
    with instance_for_test() as instance:
        with build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            assert type(nightly_benchmarks(ctx)).__name__ == "SkipReason"
        instance.add_dynamic_partitions(recipes_partitions.name, ["a", "b", "c"])
        with build_schedule_context(instance=instance, scheduled_execution_time=when) as ctx:
            request = nightly_benchmarks(ctx)
    assert request.tags["dagster/asset_partition_range_start"] == "a"
    assert request.tags["dagster/asset_partition_range_end"] == "c"
    assert request.run_key == "nightly-2026-12-03"
    # Every night measures again; the config must be valid for the job as it is.
    assert request.run_config["ops"]["benchmark_results"]["config"]["force"] is True
    from deplodock_dagster.orchestration.definitions import defs

    job = defs.resolve_job_def(nightly_benchmarks.job_name)
    assert job.run_config_schema.config_type is not None
    from dagster._config import process_config

    assert process_config(job.run_config_schema.config_type, request.run_config).success
