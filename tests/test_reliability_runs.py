"""A run that dies or is cancelled mid-group: its VM is deleted, what it measured is kept.

The run worker is a real process (tests/fixtures/faults.py, WORKER_SCRIPT) on a SQLite
instance in a temporary DAGSTER_HOME. Its group holds two tasks on one VM: the first
finishes, the second's benchmark hangs; then the worker is SIGKILLed, or the run is
cancelled as Dagster cancels one (status CANCELING, then SIGINT to the run worker, which is
what the code server's termination does). The cleanup that survives the run (the
reconciliation sensor, the cancelled-runs sensor) must delete the VM.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

from deplodock_dagster.bench.types import OUTCOME_SUCCEEDED

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

RECIPE = "alpha"
FIRST, SECOND = f"{RECIPE}/a", f"{RECIPE}/b"


def _two_task_recipe(rig):
    # Two variants on the same GPU: one group, one VM, tasks in order a then b.
    rig.recipe(RECIPE, variants={"a": {"gpu": "NVIDIA L40S", "gpu_count": 1},
                                 "b": {"gpu": "NVIDIA L40S", "gpu_count": 1}})
    rig.standin.fail("bench_hang", after=1)  # the second benchmark never ends


def _instance(home):
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _start_and_wait_for_hang(rig, tmp_path):
    home = tmp_path / "dagster_home"
    worker = rig.start_worker([RECIPE], home)
    try:
        hung = rig.standin.wait_for("bench_hanging", timeout_s=180)
    except BaseException:
        worker.kill()
        raise
    if not hung:
        worker.kill()
        worker.wait()
        pytest.fail("the second benchmark never started; worker log:\n"
                    + (tmp_path / "worker.log").read_text()[-3000:])
    assert len(rig.live_vms()) == 1
    return worker, home


def _the_run(instance):
    runs = instance.get_runs()
    assert len(runs) == 1
    return runs[0]


def _cloud_resource():
    from deplodock_dagster.orchestration.resources import CloudResource

    return CloudResource()  # from the environment, as the daemon's sensors build it


def test_run_worker_killed_with_sigkill_vm_reaped_by_reconciliation(
        reliability_rig, reliability_row, tmp_path):
    from dagster import DagsterRunStatus, build_sensor_context

    from deplodock_dagster.orchestration.sensors import reconcile_vms_sensor

    rig, row = reliability_rig, reliability_row
    row.fault = "run worker killed with SIGKILL mid-group"
    row.expected = "run left STARTED; reconciliation deletes the VM; first result kept"
    _two_task_recipe(rig)
    worker, home = _start_and_wait_for_hang(rig, tmp_path)
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)

    instance = _instance(home)
    run = _the_run(instance)
    assert run.status == DagsterRunStatus.STARTED  # nobody told Dagster
    leaked_before = rig.live_vms()
    assert len(leaked_before) == 1
    with build_sensor_context(instance=instance,
                              resources={"cloud": _cloud_resource()}) as context:
        skip = reconcile_vms_sensor(context)
    stored = rig.stored()
    row.seen = (f"run {run.status.value}; VM alive after kill; reconciliation: "
                f"{skip.skip_message}; a {stored[FIRST].outcome}; b "
                f"{'stored' if SECOND in stored else 'not stored (never measured)'}")
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = 0 if stored.get(FIRST) and stored[FIRST].metrics else 1
    assert "1 deleted" in skip.skip_message
    assert rig.live_vms() == []
    assert stored[FIRST].outcome == OUTCOME_SUCCEEDED
    assert SECOND not in stored


def test_run_cancelled_from_dagster_deletes_its_vm(reliability_rig, reliability_row,
                                                   tmp_path):
    from dagster import (
        DagsterEventType,
        DagsterRunStatus,
        build_run_status_sensor_context,
    )

    from deplodock_dagster.orchestration.sensors import delete_vms_of_canceled_runs

    rig, row = reliability_rig, reliability_row
    row.fault = "run cancelled from Dagster mid-group"
    row.expected = "run CANCELED; VM deleted (by the run or the sensor); first result kept"
    _two_task_recipe(rig)
    worker, home = _start_and_wait_for_hang(rig, tmp_path)
    instance = _instance(home)
    run = _the_run(instance)
    # What the run launcher's terminate does: mark CANCELING, interrupt the worker.
    instance.report_run_canceling(run, message="cancelled by the reliability test")
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(120)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        pytest.fail("the run worker did not stop after the interrupt:\n"
                    + (tmp_path / "worker.log").read_text()[-3000:])

    run = instance.get_run_by_id(run.run_id)
    vms_after_run = rig.live_vms()
    records = instance.get_records_for_run(
        run.run_id, of_type={DagsterEventType.RUN_CANCELED, DagsterEventType.RUN_FAILURE}
    ).records
    with build_run_status_sensor_context(
        sensor_name="delete_vms_of_canceled_runs",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=records[-1].event_log_entry.dagster_event,
        resources={"cloud": _cloud_resource()},
    ) as context:
        delete_vms_of_canceled_runs(context)
    stored = rig.stored()
    row.seen = (f"run {run.status.value}; VMs alive when the worker ended: "
                f"{len(vms_after_run)}; a {stored[FIRST].outcome}")
    row.vms_leaked = len(rig.live_vms())
    row.results_lost = 0 if stored.get(FIRST) and stored[FIRST].metrics else 1
    assert run.status == DagsterRunStatus.CANCELED
    assert rig.live_vms() == []
    assert stored[FIRST].outcome == OUTCOME_SUCCEEDED
    assert worker.returncode is not None
