"""VM cleanup that survives the run: the run-status sensors and the reconciliation sensor.

VMs are real VMs of the fake clouds (real HTTP APIs, sshd "machines"); runs are real run
records in a persistent test instance, and in the last test a real run worker (`deplodock
bench`) killed with SIGKILL in the middle of a group.
"""

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from dagster import (
    DagsterRunStatus,
    build_run_status_sensor_context,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import create_run_for_test

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.resources import CloudResource
from deplodock_dagster.orchestration.vm_cleanup import pid_alive, reconcile_vms

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cloud(cloud_env, monkeypatch):
    """The CloudResource as the code location builds it, over the fake clouds."""
    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)
    return CloudResource()


def _provision(cloud_settings, run_id: str, gpu: str = "NVIDIA H100 80GB"):
    from deplodock_dagster.deploy.cloud import provision_cloud_vm

    return provision_cloud_vm(gpu, 1, settings=cloud_settings, run_id=run_id,
                              group_label="test")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_pid_alive_tells_live_from_dead_processes():
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())


def test_reconciliation_deletes_vms_of_dead_runs_and_keeps_live_ones(
        cloud, cloud_settings, fake_gce, fake_cloudrift, caplog):
    host = __import__("socket").gethostname()
    with instance_for_test() as instance:
        def run(status, **tags):
            return create_run_for_test(instance, status=status, tags=tags).run_id

        failed = run(DagsterRunStatus.FAILURE)
        live = run(DagsterRunStatus.STARTED, **{orch_settings.WORKER_HOST_TAG: host,
                                                orch_settings.WORKER_PID_TAG: str(os.getpid())})
        killed = run(DagsterRunStatus.STARTED, **{orch_settings.WORKER_HOST_TAG: host,
                                                  orch_settings.WORKER_PID_TAG: str(_dead_pid())})
        kept = run(DagsterRunStatus.SUCCESS, **{orch_settings.KEEP_VMS_TAG: "true"})
        unknown = str(uuid.uuid4())
        vms = {name: _provision(cloud_settings, run_id) for name, run_id in [
            ("failed", failed), ("live", live), ("killed", killed), ("kept", kept),
            ("unknown", unknown)]}
        assert len(fake_gce.live_instances()) == 5

        caplog.set_level(logging.WARNING)
        now = time.time()
        first = reconcile_vms(instance, cloud_settings, first_seen={}, grace_s=600, now=now)
        assert sorted(first.deleted) == sorted([vms["failed"].name, vms["killed"].name])
        assert sorted(first.kept) == sorted(
            [vms["live"].name, vms["kept"].name, vms["unknown"].name])
        assert list(first.first_seen.values()) == [now]  # the unknown run's VM only
        warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
        assert vms["failed"].name in warned and vms["killed"].name in warned

        # A VM of an unknown run goes once the grace period has passed since first seen.
        second = reconcile_vms(instance, cloud_settings, first_seen=first.first_seen,
                               grace_s=600, now=now + 601)
        assert second.deleted == [vms["unknown"].name]
        assert second.first_seen == {}
        names = {vm["name"] for vm in fake_gce.live_instances()}
        assert names == {vms["live"].name, vms["kept"].name}


def test_reconciliation_names_a_vm_it_cannot_delete(cloud, cloud_settings, fake_cloudrift,
                                                      caplog):
    with instance_for_test() as instance:
        failed = create_run_for_test(instance, status=DagsterRunStatus.FAILURE).run_id
        vm = _provision(cloud_settings, failed, gpu="NVIDIA L40S")
        fake_cloudrift.fail_next(100, status=401, path_contains="terminate")
        caplog.set_level(logging.ERROR)
        report = reconcile_vms(instance, cloud_settings)
        assert list(report.failed) == [vm.name]
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any(vm.name in line and "could NOT be deleted" in line for line in errors)
        fake_cloudrift.clear_faults()
        assert reconcile_vms(instance, cloud_settings).deleted == [vm.name]


def test_run_failure_and_cancel_sensors_delete_that_runs_vms(cloud, cloud_settings,
                                                               fake_gce):
    from deplodock_dagster.orchestration.sensors import (
        delete_vms_of_canceled_runs,
        delete_vms_of_failed_runs,
    )

    with instance_for_test() as instance:
        for sensor, status in [(delete_vms_of_failed_runs, DagsterRunStatus.FAILURE),
                               (delete_vms_of_canceled_runs, DagsterRunStatus.CANCELED)]:
            dagster_run = create_run_for_test(instance, status=status)
            other = _provision(cloud_settings, str(uuid.uuid4()))
            mine = _provision(cloud_settings, dagster_run.run_id)
            context = build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_instance=instance, dagster_run=dagster_run,
                dagster_event=_status_event(dagster_run, status),
                resources={"cloud": cloud},
            )
            if status == DagsterRunStatus.FAILURE:
                sensor(context.for_run_failure())
            else:
                sensor(context)
            names = {vm["name"] for vm in fake_gce.live_instances()}
            assert mine.name not in names and other.name in names


def _status_event(dagster_run, status):
    from dagster import DagsterEvent, DagsterEventType

    kind = {DagsterRunStatus.FAILURE: DagsterEventType.RUN_FAILURE,
            DagsterRunStatus.CANCELED: DagsterEventType.RUN_CANCELED}[status]
    return DagsterEvent(event_type_value=kind.value, job_name=dagster_run.job_name)


HANGING_ENGINE = "#!/bin/sh\n# Stands in for the engine: never becomes healthy.\nexec sleep 600\n"


def test_run_worker_killed_mid_group_leaves_its_vm_for_one_reconciliation_at_most(
        cloud, cloud_env, cloud_settings, fake_gce, tmp_path):
    import yaml

    recipes = tmp_path / "recipes"
    (recipes / "hangs").mkdir(parents=True)
    (recipes / "hangs" / "recipe.yaml").write_text(yaml.safe_dump({
        "model": {"name": "deplodock/tiny-llama"},
        "runtime": "process",
        "backend": {"vllm": {"max_model_len": 256}},
        "benchmark": {"max_concurrency": 1, "num_prompts": 1, "random_input_len": 8,
                      "random_output_len": 8},
        "variants": {"1xH100": {"gpu": "NVIDIA H100 80GB", "gpu_count": 1}},
    }))
    engine = tmp_path / "engine-python"
    engine.write_text(HANGING_ENGINE)
    engine.chmod(0o755)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, **cloud_env, "DAGSTER_HOME": str(home),
           "DEPLODOCK_ENGINE_PYTHON": str(engine), "DEPLODOCK_HEALTH_TIMEOUT_S": "600",
           "DEPLODOCK_DEPLOY_DIR": str(tmp_path / "deploy"),
           "DEPLODOCK_MODEL_DIR": os.environ.get("DEPLODOCK_MODEL_DIR",
                                                 "/opt/deplodock/hf_models")}
    env.pop("DEPLODOCK_FIXED_HOSTS", None)
    worker = subprocess.Popen(
        [sys.executable, "-m", "deplodock_dagster.cli", "bench", "hangs",
         "--recipes-dir", str(recipes), "--results", str(tmp_path / "results"),
         "--reports", str(tmp_path / "reports")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "w"),
        start_new_session=True,
    )
    try:
        with instance_for_test(temp_dir=str(home)) as instance:
            run = _wait_for_started_run_with_vm(instance, fake_gce, worker, tmp_path / "log")
            assert run.tags[orch_settings.WORKER_PID_TAG] == str(worker.pid)

            # While the worker lives, reconciliation leaves its VM alone.
            assert _reconcile(instance, cloud).startswith("1 VM(s) in use, 0 deleted")
            assert len(fake_gce.live_instances()) == 1

            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

            # The next reconciliation deletes it.
            assert _reconcile(instance, cloud).startswith("0 VM(s) in use, 1 deleted")
            assert fake_gce.live_instances() == []
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)  # the orphaned step processes
        except ProcessLookupError:
            pass


def _reconcile(instance, cloud) -> str:
    from deplodock_dagster.orchestration.sensors import reconcile_step

    with build_sensor_context(instance=instance, resources={"cloud": cloud}) as context:
        return reconcile_step(context, cloud).skip_message


def _wait_for_started_run_with_vm(instance, fake_gce, worker, log_path, deadline_s=180):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"deplodock bench exited early:\n{log_path.read_text()[-3000:]}")
        runs = instance.get_runs()
        if runs and fake_gce.live_instances():
            run = instance.get_run_by_id(runs[0].run_id)
            if run.status == DagsterRunStatus.STARTED and \
                    orch_settings.WORKER_PID_TAG in run.tags:
                time.sleep(2)  # into the group's deploy
                return run
        time.sleep(0.5)
    pytest.fail(f"no started run with a VM in {deadline_s}s:\n{log_path.read_text()[-3000:]}")
