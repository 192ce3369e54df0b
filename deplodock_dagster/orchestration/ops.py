"""The ops of the benchmark graph: plan → provision → run tasks → delete → finish.

Ops are thin: each reads its resources and config, calls one library function and reports.
Two rules shape them:
- Nothing upstream of `delete_vm` may raise once a VM exists: task failures are outcomes
  (the library returns them) and anything unexpected becomes an outcome too, so Dagster never
  skips the delete.
- Ops that talk to clouds retry transient errors (RetryPolicy, exponential backoff with
  jitter); on a terminal error, or when retries are used up, they record the error in the
  group's state instead of raising, and `finish_benchmark` fails the run at the end,
  naming it.
"""

import multiprocessing
import os
import socket

from dagster import (
    AssetKey,
    AssetObservation,
    Backoff,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    Jitter,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    op,
)
from pydantic import Field

from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.group_state import GroupState
from deplodock_dagster.orchestration.resources import (
    BenchSettingsResource,
    CloudResource,
    RecipesResource,
    ResultStoreResource,
    SSHResource,
)
from deplodock_dagster.secrets import redact

BENCHMARK_RESULTS_KEY = AssetKey("benchmark_results")

CLOUD_RETRY_POLICY = RetryPolicy(
    max_retries=orch_settings.CLOUD_MAX_RETRIES,
    delay=orch_settings.CLOUD_RETRY_DELAY_S,
    backoff=Backoff.EXPONENTIAL,
    jitter=Jitter.PLUS_MINUS,
)


class PlanConfig(Config):
    """Which tasks of the run's recipe partitions to run."""

    variants: list[str] = Field(
        default=[], description="Variant names to run (e.g. 8xH200); empty runs every variant."
    )
    dry_run: bool = Field(
        default=False, description="Plan and report the groups; provision and run nothing."
    )


class GroupRunConfig(Config):
    """How the tasks of each group run."""

    force: bool = Field(
        default=False, description="Run tasks again even when a result is already stored."
    )


def is_transient(error: BaseException) -> bool:
    """True when repeating the call may help (cloud 429/5xx, no capacity now, dropped SSH)."""
    from deplodock_dagster.errors import CapacityError, HostError, TransientCloudError

    if isinstance(error, (TransientCloudError, CapacityError)):
        return True
    return isinstance(error, HostError) and error.transient


def _retries_left(context: OpExecutionContext) -> bool:
    return context.retry_number < orch_settings.CLOUD_MAX_RETRIES


def _run_worker_pid() -> int:
    """The pid of the process that runs this run's executor (the run worker).

    Multiprocess executor steps are spawned children of the run worker; in-process steps run
    in it.
    """
    return os.getppid() if multiprocessing.parent_process() is not None else os.getpid()


@op(out=DynamicOut(GroupState), tags={"kind": "planner"})
def plan_groups(context: OpExecutionContext, config: PlanConfig, recipes: RecipesResource):
    """Enumerate the tasks of the run's recipe partitions and emit one output per VM group."""
    from deplodock_dagster.bench.tasks import enumerate_tasks
    from deplodock_dagster.errors import DeplodockError
    from deplodock_dagster.planner import GroupByModelAndGpuPlanner

    # Record where the run worker lives: reconciliation reaps the VMs of a killed worker.
    context.instance.add_run_tags(
        context.run_id,
        {
            orch_settings.WORKER_HOST_TAG: socket.gethostname(),
            orch_settings.WORKER_PID_TAG: str(_run_worker_pid()),
        },
    )

    keys = list(context.partition_keys) if context.has_partition_key_range else []
    if not keys:
        raise Failure("benchmark_results needs recipe partitions: pick one or more recipes",
                      allow_retries=False)
    root = recipes.root()
    paths = [root / key for key in keys]
    missing = [str(path) for path in paths if not path.is_dir()]
    if missing:
        raise Failure(
            f"recipe folder(s) not found: {', '.join(missing)} (the recipes sensor drops "
            "partitions whose folder was removed; or set RecipesResource.recipes_dir)",
            allow_retries=False,
        )

    try:
        tasks = enumerate_tasks(paths, variants=config.variants or None)
    except DeplodockError as error:
        raise Failure(redact(str(error)), allow_retries=False) from error
    groups = GroupByModelAndGpuPlanner().plan(tasks)
    context.log.info(
        "planned %d task(s) of %d recipe(s) into %d group(s)", len(tasks), len(keys), len(groups)
    )
    for group in groups:
        context.log.info(
            "group %s: %d x %s, tasks %s",
            group.label, group.gpu_count, group.gpu_name,
            ", ".join(task.task_id for task in group.tasks),
        )
    if config.dry_run:
        context.log.info("dry run: no VM is provisioned and no task runs")
        return

    seen: set[str] = set()
    for group in groups:
        key, number = group.label, 1
        while key in seen:  # labels are cut at 63 characters; keep mapping keys unique
            number += 1
            key = f"{group.label[:59]}_{number}"
        seen.add(key)
        yield DynamicOutput(
            GroupState(group=group),
            mapping_key=key,
            metadata={
                "gpu": group.gpu_name,
                "gpu_count": group.gpu_count,
                "tasks": MetadataValue.md(
                    "\n".join(f"- `{task.task_id}`" for task in group.tasks)
                ),
            },
        )


@op(retry_policy=CLOUD_RETRY_POLICY, tags={"kind": "cloud"})
def provision_vm(
    context: OpExecutionContext, state: GroupState, cloud: CloudResource
) -> GroupState:
    """Create the group's VM, labelled with this run's id.

    The bridge deletes what it made when a create fails, so a failure here leaves no VM.
    Transient errors raise (and retry); terminal ones become the group's provision_error.
    """
    from deplodock_dagster.deploy.cloud import provision_cloud_vm

    group = state.group
    context.log.info("provisioning %d x %s for group %s", group.gpu_count, group.gpu_name,
                     group.label)
    try:
        conn = provision_cloud_vm(
            group.gpu_name,
            group.gpu_count,
            settings=cloud.settings(),
            run_id=context.run_id,
            group_label=group.label,
        )
    except Exception as error:  # noqa: BLE001 - classed below; a bug must not skip the report
        message = redact(str(error))
        if is_transient(error) and _retries_left(context):
            context.log.warning("group %s: provision failed, will retry: %s", group.label,
                                message)
            raise
        context.log.error("group %s: no VM: %s", group.label, message)
        return state.with_(provision_error=message)

    context.log.info(
        "group %s: VM %s (%s %s) at %s:%d", group.label, conn.name, conn.provider,
        conn.instance_id, conn.host, conn.ssh_port,
    )
    return state.with_(vm=conn.to_dict())


def _report_result(context: OpExecutionContext, result) -> None:
    """Log one task's outcome and attach it to its recipe partition as an observation."""
    metrics = result.metrics
    metadata = {
        "task_id": result.task_id,
        "outcome": result.outcome,
        "gpu": f"{result.gpu_count} x {result.gpu_name}",
    }
    if metrics is not None:
        metadata["total_token_throughput_tok_s"] = float(metrics.total_token_throughput_tok_s)
        metadata["output_throughput_tok_s"] = float(metrics.output_throughput_tok_s)
        if metrics.mean_ttft_ms is not None:
            metadata["mean_ttft_ms"] = float(metrics.mean_ttft_ms)
    if result.error:
        metadata["error"] = redact(result.error)[-2000:]
    if result.timings_s:
        metadata["timings_s"] = MetadataValue.json(dict(result.timings_s))

    if result.outcome == "failed":
        context.log.error("task %s failed: %s", result.task_id, redact(result.error or ""))
    else:
        context.log.info("task %s %s", result.task_id, result.outcome)
    context.log_event(
        AssetObservation(
            asset_key=BENCHMARK_RESULTS_KEY, partition=result.recipe_name, metadata=metadata
        )
    )


@op(tags={"kind": "benchmark"})
def run_group_tasks(
    context: OpExecutionContext,
    config: GroupRunConfig,
    state: GroupState,
    bench: BenchSettingsResource,
    ssh: SSHResource,
    results: ResultStoreResource,
) -> GroupState:
    """Deploy, benchmark and tear down each task of the group on its VM, in order.

    Never raises: the library returns task failures as outcomes, and any other error is
    turned into failed outcomes for the tasks without a result, so `delete_vm` always runs.
    Each result is stored by the library as the task finishes and reported here as it lands.
    """
    from deplodock_dagster.bench.types import OUTCOME_FAILED, TaskResult

    if state.vm is None:
        return state  # nothing was provisioned; the provision error is already recorded

    landed: list = []

    def on_result(result) -> None:
        landed.append(result)
        try:
            _report_result(context, result)
        except Exception as error:  # noqa: BLE001 - reporting must not stop the group
            context.log.warning("could not report %s: %s", result.task_id, error)

    try:
        from deplodock_dagster.bench.group import run_group_tasks as run_tasks
        from deplodock_dagster.vm.types import VMConnectionInfo

        returned = run_tasks(
            state.group,
            VMConnectionInfo.from_dict(state.vm),
            bench.settings(ssh, results_dir=results.root_dir),
            results.store(),
            context.run_id,
            force=config.force,
            on_result=on_result,
        )
    except Exception as error:  # noqa: BLE001 - delete_vm must get its input
        message = redact(f"{type(error).__name__}: {error}")
        context.log.error("group %s stopped: %s; the VM is deleted next", state.label, message)
        returned = list(landed)
        done = {result.task_id for result in returned}
        store = results.store()
        for task in state.group.tasks:
            if task.task_id in done:
                continue
            result = TaskResult(
                task_id=task.task_id, recipe_name=task.recipe.recipe_name,
                variant=task.recipe.variant, model_name=task.model_name,
                gpu_name=task.gpu_name, gpu_count=task.gpu_count,
                outcome=OUTCOME_FAILED, run_id=context.run_id, error=message,
                recipe=task.recipe.to_dict(),
            )
            try:
                store.save(result)
            except OSError as save_error:
                context.log.warning("could not store %s: %s", task.task_id, save_error)
            returned.append(result)
    except BaseException:
        # Cancelled or interrupted: Dagster launches no further step, so the VM is left to
        # the cancelled/failed-run sensors; say which one.
        context.log.warning("group %s interrupted; VM %s is deleted by the run-status sensor",
                            state.label, state.vm_name)
        raise

    return state.with_(results=tuple(result.to_dict() for result in returned))


@op(retry_policy=CLOUD_RETRY_POLICY, tags={"kind": "cloud"})
def delete_vm(context: OpExecutionContext, state: GroupState, cloud: CloudResource) -> GroupState:
    """Delete the group's VM, whatever happened to its tasks. Deleting twice is harmless."""
    from deplodock_dagster.deploy.cloud import delete_cloud_vm

    if state.vm is None:
        return state
    name = state.vm_name
    try:
        deleted_now = delete_cloud_vm(state.vm["delete_info"], settings=cloud.settings())
    except Exception as error:  # noqa: BLE001 - classed below
        message = redact(str(error))
        if is_transient(error) and _retries_left(context):
            context.log.warning("VM %s: delete failed, will retry: %s", name, message)
            raise
        context.log.error(
            "VM %s (%s %s) could NOT be deleted and is still running: %s. Delete it by hand: "
            "deplodock vm delete %s --instance-id %s",
            name, state.vm["provider"], state.vm["instance_id"], message,
            state.vm["provider"], state.vm["instance_id"],
        )
        return state.with_(delete_error=message)

    context.log.info("VM %s %s", name, "deleted" if deleted_now else "was already gone")
    return state.with_(vm_deleted=True)


def _first_line(text: str | None, limit: int = 300) -> str:
    """The first non-empty line of `text`, redacted and cut to `limit` characters."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return redact(lines[0])[:limit] if lines else ""


def _results_table(states: list[GroupState]) -> str:
    """A markdown table of every task's outcome and throughput."""
    lines = [
        "| task | group | outcome | total tok/s | error |",
        "|---|---|---|---:|---|",
    ]
    for state in states:
        for result in state.results:
            metrics = result.get("metrics") or {}
            tokens = metrics.get("total_token_throughput_tok_s")
            lines.append(
                f"| {result['task_id']} | {state.label} | {result['outcome']} | "
                f"{'' if tokens is None else f'{tokens:.1f}'} | "
                f"{_first_line(result.get('error'), 120)} |"
            )
        if state.provision_error:
            lines.append(f"| (all) | {state.label} | no VM | | {state.provision_error[:120]} |")
    return "\n".join(lines)


@op(out=Out(Nothing, is_required=False))
def finish_benchmark(context: OpExecutionContext, states: list[GroupState]):
    """The asset's output, then the run's verdict, once every group's VM is deleted.

    The output is None (results live in the ResultStore) with metadata the UI shows; it is
    yielded first so the partitions record what was measured even when the run then fails,
    naming every failed task and every VM left behind. With no group (a dry run, or a
    variants filter that matched nothing) nothing is materialized.
    """
    if not states:
        context.log.info("no group ran: nothing to materialize")
        return
    results = [result for state in states for result in state.results]
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
    failed = [item for state in states for item in state.failed_tasks()]
    leaked = [
        f"{state.vm_name} ({state.vm['provider']} {state.vm['instance_id']}): "
        f"{state.delete_error}"
        for state in states
        if state.vm is not None and not state.vm_deleted
    ]
    yield Output(
        None,
        metadata={
            "groups": len(states),
            "tasks": sum(len(state.group.tasks) for state in states),
            **{f"tasks_{outcome}": count for outcome, count in sorted(outcomes.items())},
            "tasks_not_run": sum(bool(state.provision_error) * len(state.group.tasks)
                                 for state in states),
            "vms_deleted": sum(state.vm_deleted for state in states),
            "vms_not_deleted": len(leaked),
            "results": MetadataValue.md(_results_table(states)),
        },
    )

    for line in leaked:
        context.log.error("VM NOT DELETED: %s", line)
    if not failed and not leaked:
        context.log.info("all %d group(s) finished; every VM deleted", len(states))
        return
    parts = []
    if failed:
        parts.append(
            f"{len(failed)} task(s) failed: "
            + "; ".join(f"{task_id}: {_first_line(error)}" for task_id, error in failed)
        )
    if leaked:
        parts.append(f"{len(leaked)} VM(s) could not be deleted: " + "; ".join(leaked))
    raise Failure(
        description=redact(". ".join(parts)),
        metadata={"failed_tasks": MetadataValue.json([task_id for task_id, _ in failed])},
        allow_retries=False,
    )
