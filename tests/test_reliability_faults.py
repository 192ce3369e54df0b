"""Fault injection, one step at a time, through a real Dagster benchmark run.

Each test runs `benchmark_results` over the fake clouds (real HTTP), loopback sshd "VMs"
and the stand-in engine (tests/fixtures/faults.py), fails one step, and checks the promises:
the run's outcome names what failed, every result measured is stored, and no VM is left
alive. Each test fills one row of the reliability report (scripts/reliability_report.py).
"""

from __future__ import annotations

import os
import socket

import pytest

from deplodock_dagster.bench.types import OUTCOME_FAILED, OUTCOME_SUCCEEDED

pytestmark = [pytest.mark.sshd]

RECIPE = "alpha"
TASK = f"{RECIPE}/1x"  # the task id of the rig's one-variant recipe


def _finish(row, rig, run, expected: str, *, task_ids: list[str], measured: list[str]):
    """Fill the report row: outcome seen, VMs left, results of `measured` not stored."""
    stored = rig.stored()
    outcomes = ", ".join(
        f"{task_id.split('/')[-1]} {stored[task_id].outcome}" if task_id in stored
        else f"{task_id.split('/')[-1]} not stored"
        for task_id in task_ids
    )
    row.expected = expected
    row.seen = f"run {'succeeded' if run.success else 'failed'}; {outcomes}"
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = sum(
        1 for task_id in measured
        if task_id not in stored or stored[task_id].metrics is None
    )
    return stored


def _task_ids(rig, recipe: str = RECIPE) -> list[str]:
    from deplodock_dagster.bench.tasks import enumerate_tasks

    return [task.task_id for task in enumerate_tasks([rig.recipes_dir / recipe])]


def test_baseline_run_succeeds_and_deletes_its_vm(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "none (baseline)"
    rig.recipe(RECIPE)
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "run succeeds; task succeeded",
                     task_ids=[TASK], measured=[TASK])
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    assert stored[TASK].metrics.successful_requests == 4
    assert stored[TASK].host_facts["engine"] == "vllm 0.0.0+standin"
    assert rig.live_vms() == []
    assert rig.engines_running() == []
    assert len(rig.cloudrift.instances) == 1



def _failed_run(row, rig, run, expected: str, *, says: str, measured=(),
                engine_stopped: bool = True) -> object:
    """Common checks for a run whose only task fails: stored as failed, the run fails naming
    the task and `says`, nothing measured lost, no VM left (and the engine stopped)."""
    stored = _finish(row, rig, run, expected, task_ids=[TASK], measured=list(measured))
    assert not run.success
    assert TASK in stored, "the failed task's outcome must be stored"
    assert stored[TASK].outcome == OUTCOME_FAILED
    assert says in (stored[TASK].error or ""), stored[TASK].error
    assert TASK in run.failure_text() and says in run.failure_text()
    assert rig.live_vms() == []
    if engine_stopped:
        assert rig.engines_running() == []
    return stored


# Provisioning.


def test_no_capacity_on_the_first_type_falls_back_to_the_next(reliability_rig,
                                                              reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "provision: no capacity on the preferred type"
    rig.recipe(RECIPE, gpu="NVIDIA GeForce RTX 4090")
    rig.cloudrift.no_capacity("rtx49-10c-kn.1", mode="rent_503")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "run succeeds on the next type",
                     task_ids=[TASK], measured=[TASK])
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    assert [i.instance_type for i in rig.cloudrift.instances.values()] == ["rtx49-7c-kn.1"]
    assert rig.live_vms() == []


def test_no_capacity_anywhere_fails_cleanly_without_a_vm(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "provision: no capacity anywhere"
    rig.recipe(RECIPE)
    rig.cloudrift.no_capacity("l40s-24c-kn.1")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "run fails naming the capacity; no VM",
                     task_ids=[TASK], measured=[])
    assert not run.success
    assert "no capacity" in run.failure_text().lower()
    assert TASK not in stored  # nothing ran, nothing to store
    assert rig.cloudrift.instances == {}
    assert rig.live_vms() == []


def test_transient_api_errors_while_provisioning_are_retried(reliability_rig,
                                                             reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "provision: 503 and 429 bursts"
    rig.recipe(RECIPE)
    rig.cloudrift.fail_next(2, status=503, path_contains="instances/rent")
    rig.cloudrift.fail_next(2, status=429, path_contains="instances/list")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "run succeeds (retried)", task_ids=[TASK], measured=[TASK])
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    assert [c.status for c in rig.cloudrift.calls_to("instances/rent")][:3] == [503, 503, 200]
    assert len(rig.cloudrift.instances) == 1  # retried rents made no second VM
    assert rig.live_vms() == []


def test_terminal_quota_error_fails_without_retry_or_vm(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "provision: quota exceeded (GCE operation error)"
    rig.recipe(RECIPE, gpu="NVIDIA A100 40GB")
    rig.gce.quota_exceeded(mode="operation")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "run fails naming the quota; not retried; no VM",
                     task_ids=[TASK], measured=[])
    assert not run.success
    assert "quota" in run.failure_text().lower()
    assert TASK not in stored
    assert len(rig.gce.calls_to("/instances")) >= 1
    assert rig.live_vms() == []
    # Terminal: one provision attempt, no Dagster retry.
    retries = [m for m in run.messages() if "will retry" in m]
    assert retries == []


def test_vm_that_never_accepts_ssh_is_deleted_and_provision_retried(
        reliability_rig, reliability_row, sshd_factory, monkeypatch):
    rig, row = reliability_rig, reliability_row
    row.fault = "wait for SSH: first VM never accepts SSH"
    rig.recipe(RECIPE)
    monkeypatch.setenv("DEPLODOCK_SSH_DEADLINE_S", "3")
    real_factory = rig.cloudrift.vm_factory
    made = []

    def first_one_dead(ports):
        vm = real_factory(ports)
        if not made:
            vm.stop()  # the address stays, nothing listens: SSH never comes up
        made.append(vm)
        return vm

    rig.cloudrift.vm_factory = first_one_dead
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "dead VM deleted; retry on a new VM succeeds",
                     task_ids=[TASK], measured=[TASK])
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    assert len(rig.cloudrift.instances) == 2
    assert all(i.terminated for i in rig.cloudrift.instances.values())
    assert any("never accepted SSH" in m for m in run.messages())


# On the host.


def test_bootstrap_missing_tool_fails_the_task_and_deletes_the_vm(
        reliability_rig, reliability_row, host_faults):
    rig, row = reliability_rig, reliability_row
    row.fault = "bootstrap: curl missing on the host"
    rig.recipe(RECIPE)
    host_faults.add(r"deplodock-check curl$", times=None)
    run = rig.run([RECIPE])
    _failed_run(row, rig, run, "task failed naming curl; VM deleted", says="missing curl")


def test_image_pull_failure_with_compose_runtime(reliability_rig, reliability_row,
                                                 host_faults):
    rig, row = reliability_rig, reliability_row
    row.fault = "image pull: docker compose pull fails (fake docker on PATH)"
    rig.recipe(RECIPE)
    rig.runtime = "docker-compose"
    host_faults.path_prefix = str(rig.standin.docker_bin)
    rig.standin.fail("pull")
    run = rig.run([RECIPE])
    _failed_run(row, rig, run, "task failed naming the pull; compose down; VM deleted",
                says="docker compose pull failed")
    calls = rig.standin.docker_calls()
    pulls = [i for i, c in enumerate(calls) if c.endswith(" pull")]
    downs = [i for i, c in enumerate(calls) if " down " in f"{c} "]
    assert pulls and downs and max(downs) > pulls[0], calls  # stopped what it started


def test_model_download_failure(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "model download: hf download fails (401)"
    rig.recipe(RECIPE)
    (rig.model_dir / "deplodock" / "tiny-llama" / "config.json").unlink()
    rig.standin.fail("download")
    run = rig.run([RECIPE])
    stored = _failed_run(row, rig, run, "task failed naming the model; VM deleted",
                         says="could not download model deplodock/tiny-llama")
    assert "HF token" in stored[TASK].error
    assert rig.standin.calls("engine") == []  # the engine never started


def test_engine_that_exits_at_start(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "engine start: engine exits at once"
    rig.recipe(RECIPE)
    rig.standin.fail("start")
    run = rig.run([RECIPE])
    stored = _failed_run(row, rig, run, "task failed with the engine log; VM deleted",
                         says="exited while starting")
    assert "CUDA out of memory" in stored[TASK].engine_log_tail


def test_engine_never_healthy(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "health: /health answers 503 until the deadline"
    rig.recipe(RECIPE)
    rig.health_timeout_s = 5
    rig.standin.fail("health")
    run = rig.run([RECIPE])
    _failed_run(row, rig, run, "task failed (health deadline); engine stopped; VM deleted",
                says="did not become healthy within 5 s")


def test_smoke_test_empty_reply(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "smoke test: empty chat reply"
    rig.recipe(RECIPE)
    rig.standin.fail("smoke")
    run = rig.run([RECIPE])
    _failed_run(row, rig, run, "task failed (smoke); engine stopped; VM deleted",
                says="empty reply")


def test_benchmark_failure(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "benchmark: vllm bench serve exits 1"
    rig.recipe(RECIPE)
    rig.standin.fail("bench")
    run = rig.run([RECIPE])
    stored = _failed_run(row, rig, run, "task failed with the bench output; VM deleted",
                         says="wrote no result")
    assert "injected failure" in stored[TASK].error
    assert rig.standin.calls("engine"), "the engine had started"


def test_result_copy_dropped_connection(reliability_rig, reliability_row, host_faults):
    rig, row = reliability_rig, reliability_row
    row.fault = "result copy: connection drops while copying the JSON"
    rig.recipe(RECIPE)
    host_faults.add(r"/bench/result\.json$", op="read_file", transient=True,
                    message="connection lost")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "copy retried; task succeeded",
                     task_ids=[TASK], measured=[TASK])
    assert host_faults.faults[0].fired == 1
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    assert rig.live_vms() == []


def test_teardown_failure_keeps_the_measurement(reliability_rig, reliability_row,
                                                host_faults):
    rig, row = reliability_rig, reliability_row
    row.fault = "teardown: stopping the engine fails"
    rig.recipe(RECIPE)
    # The deploy's own "stop what was there" passes; the teardown after the benchmark fails.
    host_faults.add(r"deplodock-stop", skip=1, times=1, message="kill: Operation not permitted")
    run = rig.run([RECIPE])
    stored = _failed_run(row, rig, run, "task failed (teardown); metrics kept; VM deleted",
                         says="teardown failed", measured=[TASK], engine_stopped=False)
    # The engine outlived its failed teardown; deleting the VM is what ends it (here the
    # "VM" is this machine, so the rig stops it).
    assert stored[TASK].metrics.successful_requests == 4


def test_delete_transient_errors_then_success(reliability_rig, reliability_row):
    rig, row = reliability_rig, reliability_row
    row.fault = "delete: 6 x 503 (past the client's retries), then success"
    rig.recipe(RECIPE)
    rig.cloudrift.fail_next(6, status=503, path_contains="instances/terminate")
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "delete retried by Dagster; run succeeds; VM deleted",
                     task_ids=[TASK], measured=[TASK])
    assert run.success, run.failure_text()
    assert stored[TASK].outcome == OUTCOME_SUCCEEDED
    statuses = [c.status for c in rig.cloudrift.calls_to("instances/terminate")]
    assert statuses[:6] == [503] * 6 and 200 in statuses[6:]
    assert any("delete failed, will retry" in m for m in run.messages())
    assert rig.live_vms() == []


def _engine_processes(port: int) -> list[int]:
    """Pids of real vLLM API servers started for `port`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and str(port).encode() in argv:
            found.append(int(entry))
    return found


@pytest.mark.vllm
@pytest.mark.slow
def test_real_vllm_benchmark_failure_stops_the_engine(
        reliability_rig, reliability_row, host_faults, vllm_lock, engine_python,
        tiny_model_dir):
    rig, row = reliability_rig, reliability_row
    row.fault = "benchmark fails after a real vLLM engine start"
    rig.standin.python = engine_python  # the real engine this time
    rig.model_dir = tiny_model_dir.parent.parent
    rig.health_timeout_s = 600
    rig.recipe(RECIPE, extra={"extra_env": {"VLLM_TARGET_DEVICE": "cpu",
                                            "VLLM_CPU_KVCACHE_SPACE": "1"}})
    host_faults.add(r"vllm_bench_driver\.py", message="Killed (out of memory)",
                    exit_code=137)
    run = rig.run([RECIPE])
    stored = _finish(row, rig, run, "task failed naming the benchmark; vLLM stopped; VM deleted",
                     task_ids=[TASK], measured=[])
    assert not run.success
    assert stored[TASK].outcome == OUTCOME_FAILED
    assert "wrote no result" in stored[TASK].error and "Killed" in stored[TASK].error
    assert stored[TASK].host_facts["engine"].startswith("vllm 0.")  # the engine was up
    assert stored[TASK].timings_s["deploy"] > 5
    assert _engine_processes(rig.port) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", rig.port)) != 0  # nothing serves the port
    assert rig.live_vms() == []
