"""Run one benchmark task on a host: deploy, benchmark, tear down, store the result.

`run_task` never raises for a task that fails: the failure is the task's outcome, with the
error text, the engine log tail and whatever was measured, and it is stored as soon as the
task ends. Teardown always runs. Every text stored is redacted of registered secrets.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from deplodock_dagster.bench.settings import BenchSettings
from deplodock_dagster.bench.types import (
    OUTCOME_FAILED,
    OUTCOME_SKIPPED,
    OUTCOME_SUCCEEDED,
    TaskResult,
)
from deplodock_dagster.deploy import deploy, engine_log_tail, teardown
from deplodock_dagster.deploy.params import DeployParams
from deplodock_dagster.deploy.runtimes import get_runtime
from deplodock_dagster.deploy.runtimes.common import with_resolved_dirs
from deplodock_dagster.errors import DeplodockError, HostError
from deplodock_dagster.hosts.base import Host
from deplodock_dagster.planner import BenchmarkTask
from deplodock_dagster.secrets import redact

logger = logging.getLogger(__name__)

ENGINE_LOG_FILE = "engine.log"
DEPLOY_SPEC_FILE = "deploy_spec.txt"
HOST_FACTS_TIMEOUT_S = 120
# A task cut short by a dropped SSH connection runs again from its deploy (which first stops
# whatever the cut attempt left running); a command is never re-sent on its own.
TASK_ATTEMPTS = 3


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _timed(timings: dict, phase: str):
    started = time.monotonic()
    try:
        yield
    finally:
        timings[phase] = round(time.monotonic() - started, 3)


def deploy_params_for(task: BenchmarkTask, host: Host, settings: BenchSettings) -> DeployParams:
    """The DeployParams of `task` on `host` under `settings`."""
    return DeployParams(
        recipe=task.recipe,
        host=host,
        runtime=settings.runtime_for(task.recipe.runtime),
        model_dir=settings.model_dir,
        deploy_dir=settings.deploy_dir,
        hf_token=settings.hf_token,
        gpu_device_ids=task.gpu_device_ids,
        engine_python=settings.engine_python,
        port=settings.port,
        health_timeout_s=settings.health_timeout_s,
        install_missing=settings.install_missing,
    )


def _run_quiet(host: Host, argv: list[str]) -> str:
    try:
        result = host.run(argv, timeout_s=HOST_FACTS_TIMEOUT_S, check=False)
    except DeplodockError:
        return ""
    return result.stdout.strip() if result.ok else ""


def collect_host_facts(params: DeployParams) -> dict:
    """GPU (nvidia-smi) or CPU facts, memory, kernel and the engine version or image."""
    host = params.host
    facts: dict = {"host": host.name, "runtime": params.runtime}
    gpus = _run_quiet(host, ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                             "--format=csv,noheader"])
    if gpus:
        facts["gpus"] = gpus.splitlines()
        facts["gpu_driver"] = gpus.splitlines()[0].split(",")[1].strip() if "," in gpus else ""
    else:
        for line in _run_quiet(host, ["lscpu"]).splitlines():
            if line.lower().startswith("model name:"):
                facts["cpu_model"] = line.split(":", 1)[1].strip()
        facts["cpu_count"] = _run_quiet(host, ["nproc"])
    for line in _run_quiet(host, ["free", "-b"]).splitlines():
        if line.lower().startswith("mem:"):
            facts["memory_bytes"] = int(line.split()[1])
    facts["kernel"] = _run_quiet(host, ["uname", "-sr"])
    try:
        facts["engine"] = get_runtime(params.runtime).engine_version(params)
    except DeplodockError:
        facts["engine"] = ""
    return facts


def new_result(task: BenchmarkTask, run_id: str | None, runtime: str) -> TaskResult:
    """A result for `task`, outcome failed until proven otherwise, started now."""
    recipe = task.recipe
    return TaskResult(
        task_id=task.task_id,
        recipe_name=recipe.recipe_name,
        variant=recipe.variant,
        model_name=recipe.model_name,
        gpu_name=recipe.gpu_name,
        gpu_count=recipe.gpu_count,
        outcome=OUTCOME_FAILED,
        run_id=run_id,
        recipe=recipe.to_dict(),
        runtime=runtime,
        started_at=_now(),
    )


def result_file_names(task: BenchmarkTask) -> tuple[str, str]:
    """(JSON name, table name) for the task's raw benchmark files."""
    from deplodock_dagster.bench.parse import result_file_stem
    from deplodock_dagster.hardware import gpu_short_name

    recipe = task.recipe
    stem = result_file_stem(gpu_short_name(recipe.gpu_name), recipe.gpu_count,
                            recipe.sweep_label)
    return f"{stem}.json", f"{stem}.txt"


def run_task(
    task: BenchmarkTask,
    host: Host,
    settings: BenchSettings,
    store,
    run_id: str | None,
    force: bool = False,
    *,
    attempt: int = 1,
) -> TaskResult:
    """Deploy, benchmark and tear down `task` on `host`; store and return its result.

    Skipped (outcome "skipped", nothing stored) when a succeeded result is stored, unless
    `force` (or settings.force). Never raises for a task failure. A dropped connection
    (transient HostError) runs the whole task again, up to TASK_ATTEMPTS times.
    """
    params = deploy_params_for(task, host, settings)
    result = new_result(task, run_id, params.runtime)
    if store.has_success(task.task_id) and not (force or settings.force):
        logger.info("%s: a succeeded result is stored; skipped (force to run again)", task.task_id)
        result.outcome = OUTCOME_SKIPPED
        result.error = "a succeeded result is already stored for this task; force to run it again"
        result.finished_at = result.started_at
        return result

    logger.info("task %s on %s (%s runtime)", task.task_id, host.name, params.runtime)
    files: dict[str, str] = {}
    timings = result.timings_s
    errors: list[str] = []
    try:
        with _timed(timings, "deploy"):
            params = with_resolved_dirs(params)
            outcome = deploy(params)
        result.deploy_spec = outcome.deploy_spec
        result.host_facts = collect_host_facts(params)

        from deplodock_dagster.bench.workload import run_benchmark_workload

        with _timed(timings, "benchmark"):
            workload = run_benchmark_workload(params, timeout_s=settings.bench_timeout_s)
        json_name, table_name = result_file_names(task)
        if workload.result_json is not None:
            files[json_name] = workload.result_json
        if workload.table_text:
            files[table_name] = workload.table_text
        result.metrics = workload.metrics
        if workload.ok:
            result.outcome = OUTCOME_SUCCEEDED
        else:
            errors.append(workload.error)
    except Exception as error:  # a task failure is an outcome, whatever raised it
        if isinstance(error, HostError) and error.transient and attempt < TASK_ATTEMPTS:
            logger.warning("task %s: %s; running the task again (attempt %d of %d)",
                           task.task_id, redact(str(error)).splitlines()[0], attempt + 1,
                           TASK_ATTEMPTS)
            return run_task(task, host, settings, store, run_id, force, attempt=attempt + 1)
        kind = "" if isinstance(error, DeplodockError) else f"unexpected {type(error).__name__}: "
        errors.append(f"{kind}{error}")
        logger.warning("task %s failed: %s", task.task_id, redact(str(error)).splitlines()[0])
    except BaseException as error:
        # Cancelled (Ctrl-C, a Dagster run termination): stop the engine and keep what was
        # measured before passing the interruption on.
        errors.append(f"interrupted: {type(error).__name__}")
        _finish(task, params, result, files, errors, store)
        raise
    _finish(task, params, result, files, errors, store)
    return result


def _finish(task: BenchmarkTask, params: DeployParams, result: TaskResult,
            files: dict[str, str], errors: list[str], store) -> None:
    """Capture the log of a failure, tear down (always), and store the result."""
    host = params.host
    if result.outcome != OUTCOME_SUCCEEDED:
        result.outcome = OUTCOME_FAILED
        if not result.deploy_spec:
            result.deploy_spec = _spec_for(params)
        result.engine_log_tail = _failure_log(params, errors)

    try:
        with _timed(result.timings_s, "teardown"):
            _teardown(params)
    except Exception as error:
        errors.append(f"teardown failed: {error}")
        result.outcome = OUTCOME_FAILED
        logger.warning("task %s: teardown failed on %s: %s", task.task_id, host.name,
                       redact(str(error)))

    if not result.host_facts:
        result.host_facts = {"host": host.name, "runtime": params.runtime}
    result.error = redact("\n".join(errors)) if errors else None
    result.deploy_spec = redact(result.deploy_spec)
    result.finished_at = _now()
    if result.deploy_spec:
        files[DEPLOY_SPEC_FILE] = result.deploy_spec
    if result.engine_log_tail:
        files[ENGINE_LOG_FILE] = result.engine_log_tail
    store_result(store, result, files)
    logger.info("task %s: %s", task.task_id, result.outcome)


def _teardown(params: DeployParams) -> None:
    """teardown(), once more after a dropped connection (stopping is safe to repeat)."""
    try:
        teardown(params)
    except HostError as error:
        if not error.transient:
            raise
        logger.warning("teardown on %s: %s; trying again", params.host.name,
                       redact(str(error)).splitlines()[0])
        teardown(params)


def _spec_for(params: DeployParams) -> str:
    """The deploy spec even when the deploy failed early (for the stored result)."""
    try:
        runtime = get_runtime(params.runtime)
        if params.runtime == "process":
            from deplodock_dagster.hosts.base import join_command

            return join_command(runtime.engine_argv(params))
        return runtime.compose_text(params)
    except Exception:  # only informative: never let it hide the real failure
        return ""


def _failure_log(params: DeployParams, errors: list[str]) -> str:
    """The engine log tail: from the deploy error if it carried one, else from the host."""
    for text in errors:
        marker = "--- engine log (last lines) ---\n"
        if marker in text:
            return redact(text.split(marker, 1)[1])
    return engine_log_tail(params)


def store_result(store, result: TaskResult, files: dict[str, str]) -> None:
    """Save `result` and its files; a store that fails is logged loudly, not raised."""
    try:
        folder = store.save(result, files)
    except OSError as error:
        logger.error("could not store the result of %s: %s (outcome was %s)",
                     result.task_id, error, result.outcome)
        return
    logger.info("stored %s in %s", result.task_id, folder)
