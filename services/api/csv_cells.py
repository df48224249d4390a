"""CSV that a spreadsheet opens as data, never as formulas.

A report's CSV is opened in Excel or LibreOffice by whoever downloads it. A
text cell beginning with `=`, `+`, `-` or `@` (or a tab or carriage return,
which some spreadsheets skip before looking) would be read as a formula, so
one a worker's name or an operator's email could carry (`=HYPERLINK(...)`)
would run on the reader's machine. Such a cell is written with a leading `'`,
which spreadsheets show as text (OWASP's CSV injection advice). Numbers are
written as they are: a negative latitude is data, not a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value as a CSV cell no spreadsheet reads as a formula (None: an empty cell)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A header line then one line per row, in `columns` order, every cell made safe."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(column)) for column in columns])
    return text.getvalue()
