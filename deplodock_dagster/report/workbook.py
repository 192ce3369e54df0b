"""Write a report table to an Excel workbook laid out like the old tool's reports.

One sheet, "Benchmark Results": a header row of column titles, one row per result, plain
(General) number formats with values unrounded, and each column as wide as its longest
text plus two characters. Optionally, right of the table, a bar chart of one column (the
report puts $/Mtok per machine in each model's workbook; the old reports had no chart, and
the table itself is laid out as theirs was).
"""

from __future__ import annotations

import math
from pathlib import Path

SHEET_NAME = "Benchmark Results"
MAX_COLUMN_WIDTH = 80


def _cell_value(value: object) -> object:
    """Empty cell for missing numbers (None, NaN); plain Python types otherwise."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalar from a DataFrame
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if isinstance(value, Path):
        return str(value)
    return value


def add_bar_chart(sheet, titles: list[str], row_count: int, value_title: str,
                  label_title: str) -> None:
    """A bar chart of the `value_title` column, one bar per row, labelled by `label_title`."""
    from openpyxl.chart import BarChart, Reference
    from openpyxl.utils import get_column_letter

    value_col = titles.index(value_title) + 1
    label_col = titles.index(label_title) + 1
    chart = BarChart()
    chart.type = "bar"  # horizontal: long machine and model labels stay readable
    chart.title = value_title
    chart.legend = None
    chart.y_axis.title = value_title
    chart.x_axis.delete = False  # openpyxl 3.1 hides both axes unless told otherwise
    chart.y_axis.delete = False
    data = Reference(sheet, min_col=value_col, min_row=1, max_row=row_count + 1)
    labels = Reference(sheet, min_col=label_col, min_row=2, max_row=row_count + 1)
    chart.add_data(data, titles_from_data=True)
    chart.set_categories(labels)
    chart.height = max(7.5, 0.6 * row_count + 3)
    chart.width = 18
    sheet.add_chart(chart, f"{get_column_letter(len(titles) + 2)}2")


def write_workbook(rows: list[dict], titles: list[str], path: Path,
                   chart: tuple[str, str] | None = None) -> Path:
    """Write `rows` (dicts keyed by title) under the header `titles` to `path` (.xlsx).

    `chart` is (value column title, label column title) for a bar chart beside the table.
    """
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET_NAME
    sheet.append(titles)
    for row in rows:
        sheet.append([_cell_value(row.get(title)) for title in titles])

    for index, title in enumerate(titles, start=1):
        longest = max(
            (len(str(cell.value)) for cell in sheet[get_column_letter(index)]
             if cell.value is not None),
            default=len(title),
        )
        sheet.column_dimensions[get_column_letter(index)].width = min(
            longest + 2, MAX_COLUMN_WIDTH
        )

    if chart and rows:
        add_bar_chart(sheet, titles, len(rows), chart[0], chart[1])

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    workbook.save(tmp)
    tmp.replace(path)  # a reader never sees a half-written workbook
    return path
