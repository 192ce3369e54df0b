"""Sensors: recipe partitions in step with the recipes folder, and VM cleanup after runs."""

import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.partitions import recipes_partitions
from deplodock_dagster.orchestration.resources import CloudResource, RecipesResource
from deplodock_dagster.orchestration.vm_cleanup import delete_run_vms, reconcile_vms


@sensor(
    minimum_interval_seconds=orch_settings.RECIPES_SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a `recipes` partition per new recipe folder and drops removed ones.",
)
def recipes_sensor(context: SensorEvaluationContext, recipes: RecipesResource):
    """Compare the partition keys with the recipe folders and request the difference."""
    found = recipes.recipe_names()
    existing = set(context.instance.get_dynamic_partitions(recipes_partitions.name))
    added = [name for name in found if name not in existing]
    removed = sorted(existing - set(found))
    if not added and not removed:
        return SkipReason(f"{len(found)} recipe partition(s) in step with {recipes.root()}")

    requests = []
    if added:
        context.log.info("adding recipe partitions: %s", ", ".join(added))
        requests.append(recipes_partitions.build_add_request(added))
    if removed:
        context.log.info("dropping recipe partitions: %s", ", ".join(removed))
        requests.append(recipes_partitions.build_delete_request(removed))
    return SensorResult(dynamic_partitions_requests=requests)


def _cleanup_after(context: RunStatusSensorContext, cloud: CloudResource) -> None:
    run_id = context.dagster_run.run_id
    report = delete_run_vms(run_id, cloud.settings(), log=context.log)
    if report.deleted or report.failed:
        context.log.warning(
            "run %s: deleted %d VM(s), %d could not be deleted",
            run_id, len(report.deleted), len(report.failed),
        )


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
    description="Deletes the VMs of a failed run.",
)
def delete_vms_of_failed_runs(context: RunStatusSensorContext, cloud: CloudResource):
    """A failed run's VMs are deleted (its own delete_vm may not have run)."""
    _cleanup_after(context, cloud)


@run_status_sensor(
    run_status=DagsterRunStatus.CANCELED,
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,
    description="Deletes the VMs of a cancelled run.",
)
def delete_vms_of_canceled_runs(context: RunStatusSensorContext, cloud: CloudResource):
    """A cancelled run's VMs are deleted (its delete_vm steps never ran)."""
    _cleanup_after(context, cloud)


def reconcile_step(context: SensorEvaluationContext, cloud: CloudResource) -> SkipReason:
    """One reconciliation pass, with the unknown-run timers kept in the sensor cursor."""
    first_seen = json.loads(context.cursor) if context.cursor else {}
    report = reconcile_vms(
        context.instance, cloud.settings(), first_seen=first_seen, log=context.log
    )
    context.update_cursor(json.dumps(report.first_seen, sort_keys=True))
    return SkipReason(
        f"{len(report.kept)} VM(s) in use, {len(report.deleted)} deleted, "
        f"{len(report.failed)} could not be deleted"
    )


@sensor(
    minimum_interval_seconds=orch_settings.RECONCILE_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    description="Deletes managed VMs whose run is finished, dead or unknown.",
)
def reconcile_vms_sensor(context: SensorEvaluationContext, cloud: CloudResource):
    """Periodic net under delete_vm and the run-status sensors; see vm_cleanup."""
    return reconcile_step(context, cloud)
