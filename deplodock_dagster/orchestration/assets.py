"""The assets: benchmark results per recipe partition, and the report over all of them."""

from pathlib import Path

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    graph_asset,
)

from deplodock_dagster.orchestration.graphs import bench_config_mapping, compose_benchmark
from deplodock_dagster.orchestration.partitions import recipes_partitions
from deplodock_dagster.orchestration.resources import (
    BenchSettingsResource,
    ReportResource,
    ResultStoreResource,
)

BENCH_GROUP = "benchmarks"


@graph_asset(
    partitions_def=recipes_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    config=bench_config_mapping,
    group_name=BENCH_GROUP,
    kinds={"python"},
)
def benchmark_results():
    """Benchmark results of each recipe, stored per task in the ResultStore.

    One run covers a range of recipe partitions, so the planner can share a VM between
    recipes for the same model and GPU. Task outcomes show as observations per partition.
    """
    return compose_benchmark()


def _best_per_model_markdown(output) -> str:
    """Markdown table: the cheapest machine per model by $/Mtok."""
    lines = ["| model | machine | $/Mtok | total tok/s |", "|---|---|---:|---:|"]
    for model, best in output.best_by_model.items():
        lines.append(
            f"| {model} | {best.machine} | {best.usd_per_mtok:.3f} | "
            f"{best.total_token_throughput_tok_s:.1f} |"
        )
    if not output.best_by_model:
        lines.append("| (no priced result) | | | |")
    return "\n".join(lines)


@asset(deps=[benchmark_results], group_name=BENCH_GROUP, kinds={"excel"})
def benchmark_report(
    context: AssetExecutionContext,
    results: ResultStoreResource,
    report: ReportResource,
    bench: BenchSettingsResource,
) -> MaterializeResult:
    """Excel workbooks and a $/Mtok summary over every stored result (all recipes).

    Prices come from BenchSettingsResource.prices_file, else a pricing.yaml next to the
    results; without one the report still lists throughput, with $/Mtok left empty.
    """
    from deplodock_dagster.report import build_report, find_prices_file, summary_markdown

    dirs = [Path(results.root_dir), *(Path(extra) for extra in report.extra_results_dirs)]
    prices = bench.prices_file or find_prices_file(dirs)
    output = build_report(dirs, prices, Path(report.out_dir))
    workbooks = [str(output.combined_path), *(str(p) for p in output.model_paths.values())]
    for problem in output.problems:
        context.log.warning("report: %s", problem)
    context.log.info("report: %d result(s), workbooks in %s", output.result_count,
                     output.out_dir)
    return MaterializeResult(
        metadata={
            "best_per_model": MetadataValue.md(_best_per_model_markdown(output)),
            "summary": MetadataValue.md(summary_markdown(output)),
            "results": output.result_count,
            "models": len(output.model_paths),
            "files_read": output.files_read,
            "tasks_without_numbers": len(output.unmeasured_tasks),
            "combined_workbook": MetadataValue.path(str(Path(output.combined_path).resolve())),
            "workbooks": MetadataValue.json(workbooks),
            "prices": str(output.prices_source or "none"),
        }
    )
