"""Run the tasks of one execution group, in order, on the group's host.

Used by the Dagster op between `provision_vm` and `delete_vm`, and by the CLI. It never
raises for a task or host failure: a host that cannot be reached fails the remaining tasks
as stored outcomes, so the VM is still deleted downstream and nothing measured is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from deplodock_dagster.bench.runner import new_result, run_task, store_result
from deplodock_dagster.bench.settings import BenchSettings
from deplodock_dagster.bench.types import OUTCOME_SKIPPED, TaskResult
from deplodock_dagster.errors import DeplodockError
from deplodock_dagster.planner import ExecutionGroup
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

REACH_TIMEOUT_S = 60


def run_group_tasks(
    group: ExecutionGroup,
    conn,
    settings: BenchSettings,
    store,
    run_id: str | None,
    force: bool = False,
    on_result: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Connect to `conn` (a VMConnectionInfo) and run every task of `group` in order.

    Each result is stored as its task ends and passed to `on_result`. Returns the results.
    """
    from deplodock_dagster.hosts import connect_checked

    results: list[TaskResult] = []
    host = None
    unreachable: str | None = None
    try:
        host = connect_checked(conn, key_path=settings.ssh_key_path,
                               known_hosts_path=settings.known_hosts_path)
        host.run(["true"], timeout_s=REACH_TIMEOUT_S)
    except (DeplodockError, OSError, ValueError) as error:
        unreachable = redact(f"cannot reach host {conn.name} ({conn.host}): {error}")
        logger.warning("%s", unreachable)

    try:
        for task in group.tasks:
            if unreachable:
                result = store_unreached(task, run_id, settings, store, unreachable, force)
            else:
                result = run_task(task, host, settings, store, run_id, force=force)
            results.append(result)
            if on_result is not None:
                try:
                    on_result(result)
                except Exception:  # a reporting hook must not stop the group
                    logger.exception("on_result failed for %s", result.task_id)
    finally:
        if host is not None:
            host.close()
    return results


def store_unreached(task, run_id, settings: BenchSettings, store, message: str,
                    force: bool = False) -> TaskResult:
    """Store a failed outcome for a task that never got a host (unreachable, or the VM
    could not be provisioned). A task with a stored result is skipped unless forced."""
    result = new_result(task, run_id, settings.runtime_for(task.recipe.runtime))
    result.finished_at = result.started_at
    if store.has_success(task.task_id) and not (force or settings.force):
        result.outcome = OUTCOME_SKIPPED
        result.error = "a succeeded result is already stored for this task; force to run it again"
        return result
    result.error = redact(message)
    store_result(store, result, {})
    return result
