"""Reports: benchmark results with prices, as Excel workbooks and a summary table.

    from deplodock_dagster.report import build_report
    output = build_report(["results"], "results/pricing.yaml", "reports")
    print(output.summary_markdown())

pandas and openpyxl are imported only when a report is built.
"""

from deplodock_dagster.report.build import (
    COMBINED_WORKBOOK,
    BestMachine,
    ReportOutput,
    build_report,
    model_workbook_name,
    summary_markdown,
    usd_per_mtok,
)
from deplodock_dagster.report.collect import collect_results, gpu_display_name
from deplodock_dagster.report.prices import find_prices_file, load_prices

__all__ = [
    "COMBINED_WORKBOOK",
    "BestMachine",
    "ReportOutput",
    "build_report",
    "collect_results",
    "find_prices_file",
    "gpu_display_name",
    "load_prices",
    "model_workbook_name",
    "summary_markdown",
    "usd_per_mtok",
]
