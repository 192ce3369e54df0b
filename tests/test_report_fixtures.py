"""Issue 2's acceptance test: the report rebuilt from the archived results and prices shows
the same machines, throughputs and $/Mtok as the old tool's workbooks, plus a Model column.

The old tool sorted rows by machine only (any order within a machine), so the combined
workbook is compared as a multiset of rows; per-model workbooks have one row per machine.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from deplodock_dagster.report import build_report

ARCHIVE = "deplodock-results-2025-11"
OLD_TITLES = ["Machine", "Throughput (tok/s)", "GPU Price ($/hour)", "Token Price ($/mtok)"]


def read_sheet(path: Path) -> tuple[list[str], list[dict], dict[str, float], list]:
    """Header, rows as dicts, column widths by title, and charts of the workbook's one sheet."""
    from openpyxl import load_workbook

    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Benchmark Results"], path
    sheet = workbook["Benchmark Results"]
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    widths = {
        title: sheet.column_dimensions[cell.column_letter].width
        for title, cell in zip(header, sheet[1])
    }
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            assert cell.number_format == "General", (path, cell.coordinate)
    return header, [dict(zip(header, row)) for row in rows[1:]], widths, sheet._charts


def same_row(ours: dict, theirs: dict) -> bool:
    return (
        ours["Machine"] == theirs["Machine"]
        and ours["Throughput (tok/s)"] == theirs["Throughput (tok/s)"]
        and math.isclose(ours["GPU Price ($/hour)"], theirs["GPU Price ($/hour)"], rel_tol=1e-12)
        and math.isclose(
            ours["Token Price ($/mtok)"], theirs["Token Price ($/mtok)"], rel_tol=1e-12
        )
    )


def check_cost_chart(charts: list, header: list[str], row_count: int) -> None:
    """One bar chart of the $/Mtok column, one bar per row, labelled by machine."""
    from openpyxl.chart import BarChart
    from openpyxl.utils import get_column_letter

    (chart,) = charts
    assert isinstance(chart, BarChart)
    (series,) = chart.series
    cost = get_column_letter(header.index("Token Price ($/mtok)") + 1)
    machine = get_column_letter(header.index("Machine") + 1)
    last = row_count + 1

    def cells(column: str) -> str:  # openpyxl writes one cell as $L$2, not $L$2:$L$2
        end = f":${column}${last}" if last > 2 else ""
        return f"'Benchmark Results'!${column}$2{end}"

    assert series.val.numRef.f == cells(cost)
    assert series.cat.numRef.f == cells(machine)


def compare_folder(fixture_folder: Path, out_dir: Path, prices: Path) -> None:
    output = build_report([fixture_folder], prices, out_dir)
    assert output.problems == []

    expected_names = sorted(p.name for p in fixture_folder.glob("benchmark_report*.xlsx"))
    assert sorted(p.name for p in output.paths) == expected_names
    assert sorted(p.name for p in out_dir.glob("*.xlsx")) == expected_names

    model_of_row: dict[tuple, str] = {}
    for name in expected_names:
        their_header, theirs, their_widths, their_charts = read_sheet(fixture_folder / name)
        our_header, ours, our_widths, our_charts = read_sheet(out_dir / name)
        assert their_charts == []
        assert their_header == OLD_TITLES
        assert "Model" in our_header and our_header.index("Model") == 0
        assert [t for t in our_header if t in OLD_TITLES] == OLD_TITLES
        for title in OLD_TITLES:
            assert our_widths[title] == their_widths[title], (name, title)
        assert len(ours) == len(theirs), name

        if name == "benchmark_report.xlsx":
            # Same multiset of (machine, throughput, prices); then every row matched once.
            assert Counter(r["Machine"] for r in ours) == Counter(r["Machine"] for r in theirs)
            unmatched = list(theirs)
            for row in ours:
                match = next((t for t in unmatched if same_row(row, t)), None)
                assert match is not None, f"{name}: our row {row} is not in the old workbook"
                unmatched.remove(match)
            assert unmatched == []
            assert [r["Machine"] for r in ours] == sorted(r["Machine"] for r in ours)
            combined = ours
            assert our_charts == []
        else:
            # Per model: one row per machine, in the old order (by machine).
            for our_row, their_row in zip(ours, theirs):
                assert same_row(our_row, their_row), (name, our_row, their_row)
            models = {row["Model"] for row in ours}
            assert len(models) == 1, name
            (model,) = models
            assert name == "benchmark_report_" + model.replace("/", "_") + ".xlsx"
            for row in ours:
                model_of_row[(row["Machine"], row["Throughput (tok/s)"])] = model
            check_cost_chart(our_charts, our_header, len(ours))

    # The combined workbook's Model column agrees with the per-model workbooks.
    assert {(r["Machine"], r["Throughput (tok/s)"]): r["Model"] for r in combined} == model_of_row


def test_report_reproduces_archived_workbooks(fixtures_dir, tmp_path):
    folder = fixtures_dir / ARCHIVE
    compare_folder(folder, tmp_path / "out", folder / "pricing.yaml")


def test_report_reproduces_single_query_workbooks_with_parent_prices(fixtures_dir, tmp_path):
    folder = fixtures_dir / ARCHIVE / "single-query"
    assert not (folder / "pricing.yaml").exists()
    compare_folder(folder, tmp_path / "out", folder.parent / "pricing.yaml")


def test_new_columns_and_best_machine(fixtures_dir, tmp_path):
    folder = fixtures_dir / ARCHIVE
    output = build_report(folder, folder / "pricing.yaml", tmp_path)
    summary = output.summary
    assert len(summary) == 9
    assert output.result_count == 9
    assert output.files_read == 9  # single-query/ is a report of its own, not read here

    h100_glm = summary[(summary.model == "zai-org/GLM-4.6-FP8") & (summary.machine == "8xH100")]
    assert len(h100_glm) == 1
    row = h100_glm.iloc[0]
    assert row.gpu_count == 8
    assert row.max_concurrency == 256
    assert row.output_throughput_tok_s == 3908.12
    assert row.mean_ttft_ms == 2514.99
    assert row.median_ttft_ms == 882.16
    assert row.mean_tpot_ms == 62.84
    assert row.median_tpot_ms == 64.21
    assert row.price_per_hour_usd == pytest.approx(21.52)
    assert row.usd_per_mtok == pytest.approx(21.52 / (7816.26 * 3600) * 1e6)

    best = {model: (b.machine, round(b.usd_per_mtok, 6)) for model, b in
            output.best_by_model.items()}
    assert best == {
        "QuantTrio/Qwen3-Coder-480B-A35B-Instruct-AWQ": ("8xH200", 0.7754),
        "cpatonn/GLM-4.5-Air-AWQ-4bit": ("8xH200", 0.258666),
        "zai-org/GLM-4.6-FP8": ("8xH200", 0.72095),
    }

    markdown = output.summary_markdown()
    assert "| zai-org/GLM-4.6-FP8 | 8xH200 | 512 | 10,449.17 | 0.721 |" in markdown
    assert "| cpatonn/GLM-4.5-Air-AWQ-4bit | 8x6000 | 512 | 15,713.53 |" in markdown
    assert "Problems" not in markdown
