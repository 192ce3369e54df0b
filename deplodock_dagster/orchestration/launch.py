"""Run the benchmark asset job from Python: the engine behind `deplodock bench`.

The job runs in this process's Dagster instance (DAGSTER_HOME, or a temporary one) with the
multiprocess executor, so groups run in parallel exactly as they do when the daemon launches
the job. Recipe names become `recipes` partition keys; one run covers each contiguous range
of the requested keys (in the instance's key order), so groups share VMs within a run.
"""

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from deplodock_dagster.orchestration.jobs import BENCHMARK_JOB_NAME, partition_range_tags
from deplodock_dagster.orchestration.partitions import recipes_partitions

logger = logging.getLogger(__name__)


def benchmark_job_def():
    """The benchmark job with the code location's resources (module-level for reconstructable)."""
    from deplodock_dagster.orchestration.definitions import defs

    return defs.resolve_job_def(BENCHMARK_JOB_NAME)


@dataclass
class BenchRun:
    """One Dagster run of the benchmark job and how it ended."""

    run_id: str
    recipes: list[str]
    success: bool
    failures: list[str] = field(default_factory=list)  # step failure messages
    report_summary: str = ""  # the report's markdown summary, when this run built it
    report_workbook: str = ""  # path of the combined workbook, when this run built it


def contiguous_ranges(wanted: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """Split `wanted` keys into runs of neighbours in `order` (all wanted keys are in it)."""
    position = {key: index for index, key in enumerate(order)}
    ranges: list[list[str]] = []
    for key in sorted(set(wanted), key=position.__getitem__):
        if ranges and position[key] == position[ranges[-1][-1]] + 1:
            ranges[-1].append(key)
        else:
            ranges.append([key])
    return ranges


def run_config(*, variants: Sequence[str] = (), force: bool = False, dry_run: bool = False,
               max_workers: int | None = None, log_level: str | None = None) -> dict:
    """Run config of the benchmark job for these options."""
    config: dict = {
        "ops": {"benchmark_results": {"config": {
            "variants": list(variants), "force": force, "dry_run": dry_run,
        }}},
    }
    if log_level:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    if max_workers:
        config["execution"] = {"config": {"max_concurrent": int(max_workers)}}
    return config


@contextlib.contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set environment variables for this block (child processes inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is not None:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def open_instance(instance: DagsterInstance | None = None) -> Iterator[DagsterInstance]:
    """The given instance, else DAGSTER_HOME's, else a temporary one (deleted afterwards)."""
    if instance is not None:
        yield instance
    elif os.environ.get("DAGSTER_HOME"):
        with DagsterInstance.get() as home:
            yield home
    else:
        with tempfile.TemporaryDirectory(prefix="deplodock-dagster-") as tmp:
            with DagsterInstance.local_temp(tempdir=tmp) as temp:
                yield temp


def _report_of_run(instance: DagsterInstance, run_id: str) -> tuple[str, str]:
    """(summary markdown, combined workbook path) of the report this run built, if any."""
    from dagster import AssetKey

    records = instance.fetch_materializations(AssetKey("benchmark_report"), limit=5).records
    for record in records:
        if record.run_id == run_id:
            metadata = record.asset_materialization.metadata
            summary = metadata.get("summary")
            workbook = metadata.get("combined_workbook")
            return (summary.value if summary else "", workbook.value if workbook else "")
    return "", ""


def _failures(result) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            messages.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return messages


def run_benchmarks(
    recipe_names: Sequence[str],
    *,
    recipes_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    reports_dir: str | os.PathLike | None = None,
    variants: Sequence[str] = (),
    force: bool = False,
    dry_run: bool = False,
    max_workers: int | None = None,
    instance: DagsterInstance | None = None,
    log_level: str | None = "INFO",
) -> list[BenchRun]:
    """Benchmark `recipe_names` (folder names under `recipes_dir`) through the asset job."""
    env = {
        "DEPLODOCK_RECIPES_DIR": str(Path(recipes_dir).resolve()) if recipes_dir else None,
        "DEPLODOCK_RESULTS_DIR": str(Path(results_dir).resolve()) if results_dir else None,
        "DEPLODOCK_REPORTS_DIR": str(Path(reports_dir).resolve()) if reports_dir else None,
    }
    runs: list[BenchRun] = []
    with _environment(env), open_instance(instance) as dagster:
        name = recipes_partitions.name
        known = set(dagster.get_dynamic_partitions(name))
        new = [key for key in dict.fromkeys(recipe_names) if key not in known]
        if new:
            dagster.add_dynamic_partitions(name, new)
        order = dagster.get_dynamic_partitions(name)
        job = reconstructable(benchmark_job_def)
        config = run_config(variants=variants, force=force, dry_run=dry_run,
                            max_workers=max_workers, log_level=log_level)
        for keys in contiguous_ranges(recipe_names, order):
            logger.info("benchmark run over %s", ", ".join(keys))
            with execute_job(job, instance=dagster, run_config=config,
                             tags=partition_range_tags(keys[0], keys[-1]),
                             raise_on_error=False) as result:
                summary, workbook = _report_of_run(dagster, result.run_id)
                runs.append(BenchRun(run_id=result.run_id, recipes=keys,
                                     success=result.success, failures=_failures(result),
                                     report_summary=summary, report_workbook=workbook))
    return runs
