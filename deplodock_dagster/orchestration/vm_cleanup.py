"""Delete VMs whose Dagster run is gone: the nets under `delete_vm`.

Every VM we create carries its run id (label `deplodock-run`). Two sensors use this module:
- after a run fails or is cancelled, `delete_run_vms` deletes the VMs labelled with it;
- every few minutes, `reconcile_vms` deletes managed VMs whose run is finished, whose run
  worker died (a killed worker leaves its run "started" forever with the default launcher),
  or whose run id the instance does not know, after a grace period.
Each deletion is logged at warning naming the VM; a VM that cannot be deleted is logged at
error with the command to delete it by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

from dagster import DagsterInstance, DagsterRunStatus

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

ALIVE_STATUSES = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.MANAGED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
}


@dataclass
class CleanupReport:
    """What one cleanup pass did: VM names deleted, failed (with why), and kept."""

    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)  # unknown-run VMs, by id


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def run_is_dead(instance: DagsterInstance, run_id: str) -> tuple[bool | None, str]:
    """(dead?, why) for a run id: True dead, False alive, None unknown to this instance."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None, "run unknown to this instance"
    if run.status == DagsterRunStatus.SUCCESS and run.tags.get(orch_settings.KEEP_VMS_TAG):
        return False, "kept on request (vm_create_job or deploy_cloud_job with keep_vm)"
    if run.status not in ALIVE_STATUSES:
        return True, f"run {run.status.value.lower()}"
    if run.status in (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED):
        host = run.tags.get(orch_settings.WORKER_HOST_TAG)
        pid = run.tags.get(orch_settings.WORKER_PID_TAG, "")
        if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
            status = run.status.value
            return True, f"run worker (pid {pid}) is gone though the run is still {status}"
    return False, f"run {run.status.value.lower()}"


def _delete(vm, cloud_settings, why: str, report: CleanupReport, log: logging.Logger) -> None:
    from deplodock_dagster.deploy.cloud import delete_cloud_vm

    try:
        delete_cloud_vm(vm.delete_info, settings=cloud_settings)
    except Exception as error:  # noqa: BLE001 - every VM gets its own try
        message = redact(str(error))
        report.failed[vm.name] = message
        log.error(
            "VM %s (%s %s) of a dead run (%s) could NOT be deleted: %s. Delete it by hand: "
            "deplodock vm delete %s --instance-id %s",
            vm.name, vm.provider, vm.instance_id, why, message, vm.provider, vm.instance_id,
        )
        return
    report.deleted.append(vm.name)
    log.warning("deleted VM %s (%s %s): %s", vm.name, vm.provider, vm.instance_id, why)


def delete_run_vms(
    run_id: str, cloud_settings, *, log: logging.Logger | None = None
) -> CleanupReport:
    """Delete every managed VM labelled with `run_id` (after the run failed or was cancelled)."""
    from deplodock_dagster.deploy.cloud import list_managed_vms

    log = log or logger
    report = CleanupReport()
    for vm in list_managed_vms(cloud_settings, run_id=run_id):
        _delete(vm, cloud_settings, f"run {run_id} ended without deleting it", report, log)
    return report


def reconcile_vms(
    instance: DagsterInstance,
    cloud_settings,
    *,
    first_seen: dict[str, float] | None = None,
    grace_s: float = orch_settings.UNKNOWN_RUN_GRACE_S,
    now: float | None = None,
    log: logging.Logger | None = None,
) -> CleanupReport:
    """Delete managed VMs whose run is not in progress; see the module docstring.

    `first_seen` maps instance ids of VMs with an unknown run to when they were first seen
    (the sensor keeps it in its cursor); such a VM is deleted once `grace_s` has passed.
    """
    from deplodock_dagster.deploy.cloud import list_managed_vms
    from deplodock_dagster.vm.types import RUN_LABEL

    log = log or logger
    now = time.time() if now is None else now
    first_seen = dict(first_seen or {})
    report = CleanupReport()
    vms = list_managed_vms(cloud_settings)
    for vm in vms:
        run_id = vm.labels.get(RUN_LABEL, "")
        dead, why = run_is_dead(instance, run_id) if run_id else (None, "no run id label")
        if dead is None:
            seen = first_seen.get(vm.instance_id, now)
            report.first_seen[vm.instance_id] = seen  # dropped below once deleted
            if now - seen >= grace_s:
                dead, why = True, f"{why} for {now - seen:.0f} s"
        if dead:
            _delete(vm, cloud_settings, f"run {run_id or '?'}: {why}", report, log)
            if vm.name in report.deleted:
                report.first_seen.pop(vm.instance_id, None)
        else:
            report.kept.append(vm.name)
    return report
