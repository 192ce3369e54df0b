"""`deplodock report`: Excel workbooks and $/Mtok from stored benchmark results.

    deplodock report                                  results from $DEPLODOCK_RESULTS_DIR
                                                      or ./results, prices from its
                                                      pricing.yaml, workbooks to ./reports
    deplodock report --results old-archive --results results --prices pricing.yaml --out out
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

RESULTS_ENV = "DEPLODOCK_RESULTS_DIR"
PRICES_ENV = "DEPLODOCK_PRICES_FILE"
REPORTS_ENV = "DEPLODOCK_REPORTS_DIR"


def register(subparsers) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="Excel workbooks and $/Mtok from stored results",
        description=(
            "Read benchmark results (result stores with result.json files, or folders of "
            "*_vllm_benchmark.txt files from the older tool), price them with $ per GPU-hour, "
            "and write benchmark_report.xlsx plus one benchmark_report_{org}_{model}.xlsx per "
            "model. $/Mtok = machine $/hour / (total tok/s x 3600) x 1e6."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--results",
        action="append",
        metavar="DIR",
        help=f"results folder; repeat for several (default: ${RESULTS_ENV} or ./results)",
    )
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help=(
            "YAML of $ per GPU-hour by GPU short name ('pricing: {h100: 2.69}'); default: "
            f"${PRICES_ENV}, else a pricing.yaml in the first results folder (or its "
            "parent) that has one"
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=f"folder for the workbooks (default: ${REPORTS_ENV} or ./reports)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on a result file that cannot be read instead of skipping it",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the paths written (problems still go to stderr)",
    )
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of `deplodock report`; returns the exit code."""
    from deplodock_dagster.report import build_report, find_prices_file

    results = [Path(d) for d in (args.results or [os.environ.get(RESULTS_ENV) or "results"])]
    prices = args.prices or os.environ.get(PRICES_ENV) or find_prices_file(results)
    out_dir = Path(args.out or os.environ.get(REPORTS_ENV) or "reports")

    output = build_report(results, prices, out_dir, strict=args.strict)

    # Problems (missing prices, skipped files) were already logged as warnings on stderr.
    if not args.quiet:
        print(output.summary_markdown())
    for path in output.paths:
        print(f"wrote {path}")
    return 0
