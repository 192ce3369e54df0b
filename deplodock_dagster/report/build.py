"""Build the benchmark report: a table of results with prices, and its Excel workbooks.

$/Mtok = price per hour of the machine / (total tokens per second x 3600) x 10^6, where the
machine's price is the per-GPU price from the prices file times its GPU count. A result
whose GPU has no price keeps its measured numbers and gets empty price cells.

Written to the output folder, named as the old tool named them:

- `benchmark_report.xlsx`: every result;
- `benchmark_report_{org}_{model}.xlsx`: one per model, with a bar chart of $/Mtok per
  machine beside the table.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deplodock_dagster.errors import ConfigError
from deplodock_dagster.report.collect import MeasuredResult, collect_results, gpu_display_name
from deplodock_dagster.report.prices import gpu_hour_price, load_prices, prices_from_mapping
from deplodock_dagster.report.workbook import write_workbook

if TYPE_CHECKING:  # pragma: no cover
    import pandas

logger = logging.getLogger(__name__)

COMBINED_WORKBOOK = "benchmark_report.xlsx"

# (summary DataFrame column, workbook column title). The old reports had Machine,
# Throughput, GPU Price and Token Price with these titles; the rest is new.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "Model"),
    ("machine", "Machine"),
    ("gpu_count", "GPU Count"),
    ("max_concurrency", "Concurrency"),
    ("total_token_throughput_tok_s", "Throughput (tok/s)"),
    ("output_throughput_tok_s", "Output Throughput (tok/s)"),
    ("mean_ttft_ms", "Mean TTFT (ms)"),
    ("median_ttft_ms", "Median TTFT (ms)"),
    ("mean_tpot_ms", "Mean TPOT (ms)"),
    ("median_tpot_ms", "Median TPOT (ms)"),
    ("price_per_hour_usd", "GPU Price ($/hour)"),
    ("usd_per_mtok", "Token Price ($/mtok)"),
    ("successful_requests", "Successful Requests"),
    ("failed_requests", "Failed Requests"),
    ("variant", "Variant"),
    ("source", "Source"),
)
TITLES = dict(COLUMNS)


def usd_per_mtok(price_per_hour_usd: float | None, total_tok_s: float) -> float | None:
    """$ per million tokens for a machine price and throughput; None if either is missing."""
    if price_per_hour_usd is None or not total_tok_s or total_tok_s <= 0:
        return None
    return price_per_hour_usd / (total_tok_s * 3600) * 1_000_000


def model_workbook_name(model_name: str) -> str:
    """`zai-org/GLM-4.6-FP8` -> `benchmark_report_zai-org_GLM-4.6-FP8.xlsx`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name.replace("/", "_")).strip("._")
    return f"benchmark_report_{safe or 'model'}.xlsx"


@dataclass(frozen=True)
class BestMachine:
    """The cheapest machine per token for one model."""

    machine: str
    usd_per_mtok: float
    total_token_throughput_tok_s: float
    max_concurrency: int | None


@dataclass
class ReportOutput:
    """What `build_report` wrote and found."""

    out_dir: Path
    combined_path: Path
    model_paths: dict[str, Path]
    summary: pandas.DataFrame
    files_read: int
    unmeasured_tasks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    missing_prices: list[str] = field(default_factory=list)  # GPU short names
    prices_source: str | None = None
    best_by_model: dict[str, BestMachine] = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        """Every workbook written: the combined one first."""
        return [self.combined_path, *self.model_paths.values()]

    @property
    def result_count(self) -> int:
        return len(self.summary)

    def summary_markdown(self) -> str:
        """A short Markdown summary for the Dagster UI or a terminal."""
        return summary_markdown(self)


def _row(result: MeasuredResult, prices: dict[str, float] | None) -> dict:
    metrics = result.metrics
    per_gpu = gpu_hour_price(prices, result.gpu_short, result.gpu_name) if prices else None
    machine_price = per_gpu * result.gpu_count if per_gpu is not None else None
    return {
        "model": result.model_name,
        "machine": result.machine,
        "gpu": result.gpu_short,
        "gpu_count": result.gpu_count,
        "max_concurrency": metrics.max_concurrency,
        "total_token_throughput_tok_s": metrics.total_token_throughput_tok_s,
        "output_throughput_tok_s": metrics.output_throughput_tok_s,
        "mean_ttft_ms": metrics.mean_ttft_ms,
        "median_ttft_ms": metrics.median_ttft_ms,
        "mean_tpot_ms": metrics.mean_tpot_ms,
        "median_tpot_ms": metrics.median_tpot_ms,
        "price_per_hour_usd": machine_price,
        "usd_per_mtok": usd_per_mtok(machine_price, metrics.total_token_throughput_tok_s),
        "successful_requests": metrics.successful_requests,
        "failed_requests": metrics.failed_requests,
        "variant": result.variant,
        "source": str(result.source),
    }


def _sort_key(row: dict) -> tuple:
    return (
        gpu_display_name(row["gpu"]),
        row["gpu_count"],
        row["model"],
        row["max_concurrency"] if row["max_concurrency"] is not None else -1,
        row["source"],
    )


def _resolve_prices(prices: str | Path | dict | None) -> tuple[dict[str, float] | None, str | None]:
    if prices is None:
        return None, None
    if isinstance(prices, dict):
        return prices_from_mapping(prices, source="prices"), "the prices mapping"
    return load_prices(prices), str(prices)


def _best_by_model(rows: list[dict]) -> dict[str, BestMachine]:
    best: dict[str, BestMachine] = {}
    for row in rows:
        cost = row["usd_per_mtok"]
        if cost is None:
            continue
        current = best.get(row["model"])
        if current is None or cost < current.usd_per_mtok:
            best[row["model"]] = BestMachine(
                machine=row["machine"],
                usd_per_mtok=cost,
                total_token_throughput_tok_s=row["total_token_throughput_tok_s"],
                max_concurrency=row["max_concurrency"],
            )
    return dict(sorted(best.items()))


def _price_problems(rows: list[dict], missing: list[str], have_prices: bool,
                    prices_source: str | None) -> list[str]:
    """One message per GPU without a price (or one saying there are no prices at all)."""
    if not have_prices:
        return ["no prices file: GPU price and $/Mtok are left empty (pass --prices)"]
    problems = []
    for gpu in missing:
        machines = sorted({row["machine"] for row in rows if row["gpu"] == gpu})
        problems.append(
            f"no price for GPU '{gpu}' in {prices_source}: $/Mtok left empty for "
            f"{', '.join(machines)}; add '{gpu}: <$ per GPU-hour>' under 'pricing:'"
        )
    return problems


def _titled(rows: list[dict]) -> list[dict]:
    """Rows keyed by workbook column title."""
    return [{title: row.get(key) for key, title in TITLES.items()} for row in rows]


def build_report(
    results_dirs: list[str | Path] | str | Path,
    prices: str | Path | dict | None,
    out_dir: str | Path,
    *,
    strict: bool = False,
) -> ReportOutput:
    """Read every result in `results_dirs`, price it, and write the workbooks to `out_dir`.

    `prices` is a pricing YAML path, a mapping of GPU name to $ per GPU-hour, or None (no
    $/Mtok). Raises ConfigError when a folder is missing or holds no result at all; files
    that cannot be read are skipped and listed in `problems` (raised with `strict`).
    """
    import pandas

    if isinstance(results_dirs, (str, Path)):
        results_dirs = [results_dirs]
    price_table, prices_source = _resolve_prices(prices)
    collected = collect_results(list(results_dirs), strict=strict)
    if not collected.results:
        folders = ", ".join(str(d) for d in results_dirs)
        detail = f" ({len(collected.unmeasured_tasks)} stored tasks have no numbers)" if (
            collected.unmeasured_tasks) else ""
        raise ConfigError(
            f"no benchmark results found in {folders}{detail}; expected result.json files of "
            "a result store, or *_vllm_benchmark.txt files directly in the folder (subfolders "
            "of an old archive are not read: pass each with --results)"
        )

    # Price every row; a GPU without a price keeps its numbers and is named once.
    rows = sorted((_row(result, price_table) for result in collected.results), key=_sort_key)
    missing = sorted({row["gpu"] for row in rows if row["price_per_hour_usd"] is None})
    price_problems = _price_problems(rows, missing, price_table is not None, prices_source)
    for problem in price_problems:
        logger.warning("%s", problem)

    # Write the combined workbook, then one per model with its $/Mtok chart.
    out_dir = Path(out_dir)
    combined_path = write_workbook(_titled(rows), list(TITLES.values()),
                                   out_dir / COMBINED_WORKBOOK)
    model_paths = {}
    for model in sorted({row["model"] for row in rows}):
        selected = [row for row in rows if row["model"] == model]
        model_paths[model] = write_workbook(
            _titled(selected), list(TITLES.values()), out_dir / model_workbook_name(model),
            chart=(TITLES["usd_per_mtok"], TITLES["machine"]),
        )
    logger.info("wrote %d workbooks to %s", 1 + len(model_paths), out_dir)

    summary = pandas.DataFrame(rows, columns=[key for key, _ in COLUMNS] + ["gpu"])
    return ReportOutput(
        out_dir=out_dir,
        combined_path=combined_path,
        model_paths=model_paths,
        summary=summary,
        files_read=collected.files_read,
        unmeasured_tasks=collected.unmeasured_tasks,
        problems=collected.problems + price_problems,
        missing_prices=missing if price_table is not None else [],
        prices_source=prices_source,
        best_by_model=_best_by_model(rows),
    )


def _fmt(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return out


def summary_markdown(output: ReportOutput) -> str:
    """Markdown: counts, the cheapest machine per model, every result, and any problems."""
    lines = [
        f"**{output.result_count} results** from {output.files_read} files; "
        f"{len(output.model_paths)} models; workbooks in `{output.out_dir}`.",
        f"Prices: {output.prices_source or 'none'}.",
        "",
    ]
    if output.best_by_model:
        lines += ["Cheapest machine per model:", ""]
        lines += _markdown_table(
            ["Model", "Machine", "Concurrency", "Throughput (tok/s)", "$/Mtok"],
            [
                [model, best.machine, _fmt(best.max_concurrency),
                 _fmt(best.total_token_throughput_tok_s), _fmt(best.usd_per_mtok, 3)]
                for model, best in output.best_by_model.items()
            ],
        )
        lines.append("")
    records = output.summary.to_dict("records")
    lines += ["All results:", ""]
    lines += _markdown_table(
        ["Model", "Machine", "Concurrency", "Throughput (tok/s)", "Output (tok/s)",
         "Mean TTFT (ms)", "Mean TPOT (ms)", "$/hour", "$/Mtok"],
        [
            [row["model"], row["machine"], _fmt(_plain(row["max_concurrency"])),
             _fmt(row["total_token_throughput_tok_s"]), _fmt(row["output_throughput_tok_s"]),
             _fmt(row["mean_ttft_ms"]), _fmt(row["mean_tpot_ms"]),
             _fmt(row["price_per_hour_usd"]), _fmt(row["usd_per_mtok"], 3)]
            for row in records
        ],
    )
    if output.unmeasured_tasks:
        lines += ["", f"Tasks without numbers ({len(output.unmeasured_tasks)}):", ""]
        lines += [f"- {task}" for task in output.unmeasured_tasks]
    if output.problems:
        lines += ["", f"Problems ({len(output.problems)}):", ""]
        lines += [f"- {problem}" for problem in output.problems]
    return "\n".join(lines) + "\n"


def _plain(value: object) -> object:
    """An integer column with gaps comes back from pandas as float; show it as an int."""
    if isinstance(value, float) and value == value and value.is_integer():
        return int(value)
    return value
