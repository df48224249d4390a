"""Report CSV cells a spreadsheet reads as text, never as a formula (services/api/csv_cells.py)."""

from __future__ import annotations

import csv
import io

from services.api.csv_cells import csv_text, safe_cell


def test_text_that_would_start_a_formula_is_quoted() -> None:
    for dangerous in ('=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(dangerous) == "'" + dangerous
    assert safe_cell("sos") == "sos" and safe_cell("a=b") == "a=b"


def test_numbers_and_missing_values() -> None:
    assert safe_cell(-33.5) == -33.5 and safe_cell(0) == 0  # a negative number is data
    assert safe_cell(None) == ""


def test_csv_text_has_the_header_then_rows_in_column_order() -> None:
    text = csv_text([{"b": "=cmd", "a": 1.5}, {"a": None, "b": "x,y"}], ("a", "b"))
    assert text == 'a,b\n1.5,\'=cmd\n,"x,y"\n'
    assert list(csv.reader(io.StringIO(text)))[1] == ["1.5", "'=cmd"]
