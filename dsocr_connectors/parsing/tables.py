"""The model's table HTML -> `Table`, with spans, header rows and repairs, via html.parser.

DeepSeek-OCR writes tables as `<table><tr><td>..</td></tr></table>` with `rowspan`/`colspan`,
`<br>` inside cells and HTML entities. Broken outputs leave rows, cells or the table open,
open a `<tr>` inside an open row, close rows twice, or start in the middle of a row. The
builder below repairs these the way a browser would (a new `<tr>` closes the open row, a
cell outside any row opens one) and records each repair as a flag on the `Table`.

Header rule: rows inside `<thead>` or made only of `<th>` cells are header rows. When there
are none, the first row counts as a header when the table has at least two rows and that
row has no numeric cell and at least half of its cells are non-empty; a header whose cells
span rows (`rowspan`) extends the header over those rows.

Limits, so that no table can cost much time or memory: a rowspan is capped at the rows left
in the table, a colspan at the table's width counted with spans no wider than its widest
row has cells (but never below `FREE_COL_SPAN`, never above `MAX_COL_SPAN`), and a cell that would make the grid larger than
`MAX_GRID_CELLS` positions gets spans of 1 (all flagged `span_clamped`). Cell attributes with broken quotes
(`<td colspan='3">`) are read for their spans and the cell is kept (`bad_attribute`).
A table whose every text is markup tokens (`&lt;fcel&gt;&lt;nl&gt;`, written by a model that
hallucinated another table language) is flagged `hallucinated`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from dsocr_connectors.document import Table, TableCell

MAX_COL_SPAN = 1000
FREE_COL_SPAN = 64  # colspans up to this are never capped (they cost nothing)
MAX_GRID_CELLS = 250_000  # rows x columns past which a cell's spans count as 1
_CELL_TAG_RE = re.compile(r"<(td|th)\b([^<>]*)>", re.IGNORECASE)
_SPAN_ATTR_RE = re.compile(r"\b(rowspan|colspan)\s*=\s*[\"']?\s*([^\"'\s>]*)", re.IGNORECASE)
_MARKUP_TOKEN_RE = re.compile(r"</?[A-Za-z_][\w-]*>")
_NUMERIC_RE = re.compile(r"[-+−–(]?[$€£¥]?\s*[\d.,\s%]*\d[\d.,\s%)]*")
# Repairs that mean the HTML was not well formed (the page gets `malformed_table`).
STRUCTURAL_FLAGS = frozenset(
    {
        "no_table_tag",
        "unclosed_table",
        "unclosed_row",
        "unclosed_cell",
        "nested_tr",
        "nested_table",
        "stray_end_tag",
        "cell_outside_row",
        "bad_span",
        "span_clamped",
        "bad_attribute",
    }
)


@dataclass
class _RawCell:
    text: str = ""
    row_span: int = 1
    col_span: int = 1
    is_header: bool = False


def _span(value: str | None, flags: set[str]) -> int:
    if value is None:
        return 1
    try:
        span = int(value.strip())
    except ValueError:
        flags.add("bad_span")
        return 1
    if span < 1:
        flags.add("bad_span")
        return 1
    return span


class _TableBuilder(HTMLParser):
    """Collects rows of raw cells from (possibly broken) table HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[_RawCell]] = []
        self.row: list[_RawCell] | None = None
        self.cell: _RawCell | None = None
        self.flags: set[str] = set()
        self.depth = 0
        self.saw_table = False
        self.in_thead = False
        self.outside: list[str] = []  # text outside any cell

    def _close_cell(self) -> None:
        if self.cell is not None and self.row is not None:
            self.row.append(self.cell)
        self.cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self.row is not None:
            self.rows.append(self.row)
        self.row = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            if self.depth > 0:
                self.flags.add("nested_table")
            self.depth += 1
            self.saw_table = True
        elif tag == "thead":
            self.in_thead = True
        elif tag in ("tbody", "tfoot"):
            self.in_thead = False
        elif tag == "tr":
            if self.row is not None:
                self.flags.add("nested_tr")
            self._close_row()
            self.row = []
        elif tag in ("td", "th"):
            if self.row is None:
                self.flags.add("cell_outside_row")
                self.row = []
            if self.cell is not None:
                self.flags.add("unclosed_cell")
            self._close_cell()
            values = dict(attrs)
            self.cell = _RawCell(
                row_span=_span(values.get("rowspan"), self.flags),
                col_span=_span(values.get("colspan"), self.flags),
                is_header=tag == "th" or self.in_thead,
            )
        elif tag == "br" and self.cell is not None:
            self.cell.text += "\n"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            if self.cell is None:
                self.flags.add("stray_end_tag")
            self._close_cell()
        elif tag == "tr":
            if self.row is None:
                self.flags.add("stray_end_tag")
            self._close_row()
        elif tag == "thead":
            self.in_thead = False
        elif tag == "table":
            self._close_row()
            if self.depth == 0:
                self.flags.add("stray_end_tag")
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.text += data
        elif data.strip():
            self.flags.add("text_outside_cells")
            self.outside.append(" ".join(data.split()))

    def finish(self) -> None:
        self.close()
        if self.cell is not None:
            self.flags.add("unclosed_cell")
        if self.row is not None:
            self.flags.add("unclosed_row")
        self._close_row()
        if not self.saw_table:
            self.flags.add("no_table_tag")
        elif self.depth > 0:
            self.flags.add("unclosed_table")


def clean_cell_text(text: str) -> str:
    """Collapse whitespace inside each line; `<br>` line breaks are kept as `\\n`."""
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def is_numeric(text: str) -> bool:
    return bool(text) and _NUMERIC_RE.fullmatch(text) is not None


def _normalize_cell_tags(html: str, flags: set[str]) -> str:
    """Rewrite `<td ...>`/`<th ...>` tags with only their spans, quoted properly.

    `<td colspan='3">B</td>` would otherwise swallow the cell: html.parser reads the value
    up to the next `'`. Other attributes mean nothing to the grid and are dropped here
    (`Table.html` keeps the HTML as written).
    """

    def rewrite(match: re.Match[str]) -> str:
        attrs = match.group(2)
        spans = "".join(f' {name.lower()}="{value}"' for name, value in _SPAN_ATTR_RE.findall(attrs))
        quotes = [q for q in attrs if q in "'\""]
        if len(quotes) % 2 or any(a != b for a, b in zip(quotes[::2], quotes[1::2])):
            flags.add("bad_attribute")
        return f"<{match.group(1)}{spans}>"

    return _CELL_TAG_RE.sub(rewrite, html)


def _free_column(taken: list[tuple[int, int]], column: int) -> int:
    """The first column >= `column` not covered by the sorted `(start, end)` intervals."""
    for start, end in taken:
        if start <= column < end:
            column = end
    return column


def _covered(intervals: list[tuple[int, int]]) -> int:
    """How many columns the intervals cover (overlaps counted once)."""
    total, reach = 0, 0
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _place(rows: list[list[_RawCell]], flags: set[str]) -> tuple[list[TableCell], int]:
    """Grid positions for the rows of raw cells (spans occupy later rows); returns num_cols.

    Spans are capped (module docstring). Each row keeps the column intervals that cells of
    rows above cover in it, so placing costs what the HTML holds, not what spans claim.
    """
    num_rows = len(rows)
    widest = max((len(row) for row in rows), default=0)
    width = max((sum(min(c.col_span, widest) for c in row) for row in rows), default=0)
    max_col_span = min(MAX_COL_SPAN, max(width, FREE_COL_SPAN))
    taken: list[list[tuple[int, int]]] = [[] for _ in rows]  # per row, intervals from above
    cells: list[TableCell] = []
    num_cols = 0
    for r, row in enumerate(rows):
        above = sorted(taken[r])
        c = 0
        for raw in row:
            c = _free_column(above, c)
            row_span = min(raw.row_span, num_rows - r)
            col_span = min(raw.col_span, max_col_span)
            if (c + col_span) * num_rows > MAX_GRID_CELLS:
                row_span = col_span = 1
            if (row_span, col_span) != (raw.row_span, raw.col_span):
                flags.add("span_clamped")
            taken[r].append((c, c + col_span))
            for rr in range(r + 1, r + row_span):
                taken[rr].append((c, c + col_span))
            cells.append(
                TableCell(
                    row=r,
                    col=c,
                    text=clean_cell_text(raw.text),
                    row_span=row_span,
                    col_span=col_span,
                    is_header=raw.is_header,
                )
            )
            c += col_span
            num_cols = max(num_cols, c)
    if len({_covered(taken[r]) for r in range(num_rows) if rows[r]}) > 1:
        flags.add("ragged_rows")
    return cells, num_cols


def is_markup_only(texts: list[str]) -> bool:
    """Whether the texts hold markup tokens (`<fcel>`, `<nl>`) and nothing else."""
    joined = " ".join(texts)
    return bool(_MARKUP_TOKEN_RE.search(joined)) and not _MARKUP_TOKEN_RE.sub("", joined).strip()


def _header_rows(cells: list[TableCell], num_rows: int) -> int:
    """How many leading rows are header rows (rule in the module docstring)."""
    by_row: dict[int, list[TableCell]] = {}
    for cell in cells:
        by_row.setdefault(cell.row, []).append(cell)
    count = 0
    while count < num_rows and by_row.get(count) and all(c.is_header for c in by_row[count]):
        count += 1
    if count or num_rows < 2 or not by_row.get(0):
        return count
    first = by_row[0]
    filled = [c for c in first if c.text]
    if any(is_numeric(c.text) for c in filled) or len(filled) * 2 < len(first):
        return 0
    return min(max(c.row_span for c in first), num_rows - 1)


def parse_table(html: str) -> Table:
    """Parse table HTML (possibly broken or partial) into a `Table`; never raises.

    Args:
        html: the HTML as the model emitted it; kept verbatim in `Table.html`.

    Returns:
        A `Table` whose `cells` carry grid positions and spans, whose `header_rows` follows
        the rule in the module docstring, and whose `flags` name every repair made.
    """
    builder = _TableBuilder()
    builder.feed(_normalize_cell_tags(html, builder.flags))
    builder.finish()
    flags = builder.flags
    rows = builder.rows
    cells, num_cols = _place(rows, flags)
    num_rows = len(rows)
    header_rows = _header_rows(cells, num_rows)
    for cell in cells:
        if cell.row < header_rows:
            cell.is_header = True
    if not cells:
        flags.add("empty_table")
    if is_markup_only([c.text for c in cells] + builder.outside):
        flags.add("hallucinated")
    return Table(
        num_rows=num_rows,
        num_cols=num_cols,
        cells=cells,
        header_rows=header_rows,
        html=html,
        flags=sorted(flags),
        outside_text=builder.outside,
    )


def row_signatures(table: Table) -> list[tuple[tuple[str, int, int], ...]]:
    """One hashable signature per row (texts and spans), to find rows repeated by a loop."""
    rows: list[list[tuple[str, int, int]]] = [[] for _ in range(table.num_rows)]
    for cell in table.cells:
        rows[cell.row].append((cell.text, cell.row_span, cell.col_span))
    return [tuple(row) for row in rows]
