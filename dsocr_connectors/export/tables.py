"""`Table` -> Markdown pipe table, clean HTML, CSV and pandas DataFrame, honouring spans.

- HTML keeps spans as `rowspan`/`colspan` and header rows in `<thead>` with `<th>`.
- Markdown pipe tables cannot span: a spanned cell's text is written in its top-left
  position and the positions it covers are left empty. Header rows are joined into the one
  header line a pipe table has (texts of a column joined with " / ", repeats dropped); a
  table with no header row gets an empty header line. `|` is escaped, line breaks become
  `<br>`.
- CSV and DataFrame repeat a spanned cell's text over every position it covers, so each row
  reads on its own. Header rows become the DataFrame columns (a MultiIndex when several).
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from dsocr_connectors.document import Table


def _pipe_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _header_line(table: Table, grid: list[list[str]]) -> list[str]:
    header = []
    for col in range(table.num_cols):
        parts: list[str] = []
        for row in grid[: table.header_rows]:
            if row[col] and row[col] not in parts:
                parts.append(row[col])
        header.append(" / ".join(parts))
    return header


def table_to_markdown(table: Table) -> str:
    """A Markdown pipe table (rules in the module docstring); "" for a table with no cells."""
    if table.num_cols == 0:
        return ""
    header = _header_line(table, table.grid(fill_spans=True))
    body = table.grid(fill_spans=False)[table.header_rows :]
    lines = ["| " + " | ".join(_pipe_cell(text) for text in header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in range(table.num_cols)) + "|")
    for row in body:
        lines.append("| " + " | ".join(_pipe_cell(text) for text in row) + " |")
    return "\n".join(lines)


def table_to_html(table: Table) -> str:
    """Well-formed HTML of the table, spans and header rows kept, text escaped."""
    rows: list[list[str]] = [[] for _ in range(table.num_rows)]
    for cell in sorted(table.cells, key=lambda c: (c.row, c.col)):
        tag = "th" if cell.is_header else "td"
        attrs = ""
        if cell.row_span > 1:
            attrs += f' rowspan="{cell.row_span}"'
        if cell.col_span > 1:
            attrs += f' colspan="{cell.col_span}"'
        text = "<br>".join(html.escape(line) for line in cell.text.split("\n"))
        rows[cell.row].append(f"<{tag}{attrs}>{text}</{tag}>")
    head = ["<tr>" + "".join(r) + "</tr>" for r in rows[: table.header_rows]]
    body = ["<tr>" + "".join(r) + "</tr>" for r in rows[table.header_rows :]]
    parts = ["<table>"]
    if head:
        parts.append("<thead>" + "".join(head) + "</thead>")
    if body:
        parts.append("<tbody>" + "".join(body) + "</tbody>")
    parts.append("</table>")
    return "".join(parts)


def table_to_csv(table: Table) -> str:
    """CSV text, one line per row (header rows first), spanned text repeated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(table.grid(fill_spans=True))
    return out.getvalue()


def table_to_dataframe(table: Table) -> Any:
    """A pandas DataFrame: header rows as (Multi)columns, body rows as data (as strings)."""
    import pandas as pd

    grid = table.grid(fill_spans=True)
    header, body = grid[: table.header_rows], grid[table.header_rows :]
    if not header:
        return pd.DataFrame(body, columns=range(table.num_cols))
    if len(header) == 1:
        columns: Any = header[0]
    else:
        columns = pd.MultiIndex.from_arrays(header)
    return pd.DataFrame(body, columns=columns)
