"""Write a report table to an Excel workbook laid out like the old tool's reports.

One sheet, "Benchmark Results": a header row of column titles, one row per result, plain
(General) number formats with values unrounded, and each column as wide as its longest
text plus two characters.
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


def write_workbook(rows: list[dict], titles: list[str], path: Path) -> Path:
    """Write `rows` (dicts keyed by title) under the header `titles` to `path` (.xlsx)."""
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

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    workbook.save(tmp)
    tmp.replace(path)  # a reader never sees a half-written workbook
    return path
