"""Jobs: the benchmark asset job, and one job per single action for the launchpad."""

from __future__ import annotations

from dagster import define_asset_job, multiprocess_executor
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.action_jobs import (
    deploy_cloud_job,
    deploy_local_job,
    deploy_ssh_job,
    teardown_job,
    vm_create_job,
    vm_delete_job,
)
from deplodock_dagster.orchestration.partitions import recipes_partitions

BENCHMARK_JOB_NAME = "benchmark_job"


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one run cover recipe partitions `first`..`last` (in key order)."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: first,
        ASSET_PARTITION_RANGE_END_TAG: last,
        orch_settings.KIND_TAG: "benchmark",
    }


# Groups run in parallel, one process each; cap them with the executor's max_concurrent
# (run config: execution.config.multiprocess.max_concurrent), `--max-workers` on the CLI.
benchmark_job = define_asset_job(
    BENCHMARK_JOB_NAME,
    selection=["benchmark_results", "benchmark_report"],
    partitions_def=recipes_partitions,
    executor_def=multiprocess_executor,
    tags={orch_settings.KIND_TAG: "benchmark"},
    description="Benchmark the selected recipe partitions in one run, then rebuild the report.",
)

ACTION_JOBS = [
    deploy_local_job,
    deploy_ssh_job,
    deploy_cloud_job,
    teardown_job,
    vm_create_job,
    vm_delete_job,
]
