"""The nightly benchmark: every recipe partition in one run, so VMs are shared.

Each night measures again (force): a result stored by an earlier night does not make the
task skip, and the store keeps the earlier result in the task's history/ folder.
"""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.jobs import benchmark_job, partition_range_tags
from deplodock_dagster.orchestration.launch import run_config
from deplodock_dagster.orchestration.partitions import recipes_partitions


@schedule(
    job=benchmark_job,
    cron_schedule=orch_settings.NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Benchmarks every recipe nightly (UTC) in one run over all partitions.",
)
def nightly_benchmarks(context: ScheduleEvaluationContext):
    """One run over the whole range of current recipe partition keys."""
    keys = context.instance.get_dynamic_partitions(recipes_partitions.name)
    if not keys:
        return SkipReason("no recipe partitions yet (the recipes sensor adds them)")
    return RunRequest(
        run_key=f"nightly-{context.scheduled_execution_time:%Y-%m-%d}",
        tags=partition_range_tags(keys[0], keys[-1]),
        run_config=run_config(force=True),
    )
