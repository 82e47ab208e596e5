"""Tables of a PDF text layer: unruled ones found from the text's alignment, and any
`LayerTable` (ruled ones come from pymupdf's `find_tables` in the loader) -> `Table`.

An unruled table is a run of at least `MIN_ROWS` text rows, each of two or more cells,
whose cells fall into the same columns:
- a cell is a stretch of a line's words without a gap wider than `CELL_GAP` x the font
  size (invoice generators draw each cell as its own line; a wide gap splits one line);
- a row is the cells whose lines overlap vertically by half their height; rows follow each
  other with gaps under `MAX_ROW_GAP` x the row height;
- the columns are the x-ranges the cells of the run cover, merged where they overlap; each
  is aligned (`MIN_ALIGNED` of its cells share a left edge, a right edge or a centre) and
  at most one holds a single cell (the middle words of loosely justified prose wander);
- prose is not a table: the median cell is at most `MAX_CELL_CHARS` long (two columns of
  running text have long lines), and a two-column run needs numbers in half its rows
  (a run of "Name: value" pairs in words stays text).
The first row is the header when it is all bold and the rest is not, or when it has no
digits while most other rows do. Rows stay rows: a cell's text never moves to another row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import median

from dsocr_connectors.document import Table, TableCell
from dsocr_connectors.text_layer.lines import Line, union
from loaders.page import LayerTable, LayerWord

MIN_ROWS = 3
CELL_GAP = 1.5
MAX_ROW_GAP = 1.5
MAX_CELL_CHARS = 24
ALIGN_TOLERANCE = 2.0  # points
MIN_ALIGNED = 0.7  # of a column's cells share an edge or centre
_DIGIT = re.compile(r"\d")


@dataclass
class _Cell:
    text: str
    bbox: tuple[float, float, float, float]
    is_bold: bool
    line: int  # index of its line in the page's lines


def find_unruled_tables(lines: list[Line], words: list[LayerWord]) -> list[tuple[LayerTable, set[int]]]:
    """Tables drawn without rules, each with the indexes (into `lines`) of the lines it takes.

    Args:
        lines: the page's lines not already in a ruled table, split lines joined
            (`lines.join_split_lines`: a loosely justified line is one line, not a row).
        words: the page's words (they split a line into cells); without words every line
            is one cell.
    """
    rows = _rows(_cells(lines, words))
    tables = []
    for run in _runs(rows):
        table = _table(run)
        if table is not None:
            tables.append((table, {cell.line for row in run for cell in row}))
    return tables


def layer_table_to_table(layer_table: LayerTable) -> Table:
    """A pymupdf table (None marks a cell covered by a span) -> `Table` with spans.

    A cell spans right over the None cells after it in its row, then down over the rows
    whose cells under it are all None. A header cell never spans into the body (and a body
    cell never up into the header): the None positions it would take become empty cells,
    so no header label is repeated in the body. A None that no cell covers becomes an
    empty cell.
    """
    rows = [list(r) for r in layer_table.rows]
    num_rows = len(rows)
    num_cols = max((len(r) for r in rows), default=0)
    for r in rows:
        r.extend([""] * (num_cols - len(r)))
    header_rows = layer_table.header_rows
    covered = [[False] * num_cols for _ in range(num_rows)]
    cells: list[TableCell] = []
    for r in range(num_rows):
        last_row = header_rows if r < header_rows else num_rows  # spans stay on their side
        for c in range(num_cols):
            if covered[r][c]:
                continue
            value = rows[r][c]
            if value is None:  # a None no span reached: an empty cell
                value = ""
                col_span = row_span = 1
            else:
                col_span = 1
                while (c + col_span < num_cols and rows[r][c + col_span] is None
                       and not covered[r][c + col_span]):
                    col_span += 1
                row_span = 1
                while r + row_span < last_row and all(
                    rows[r + row_span][cc] is None and not covered[r + row_span][cc]
                    for cc in range(c, c + col_span)
                ):
                    row_span += 1
            for rr in range(r, r + row_span):
                for cc in range(c, c + col_span):
                    covered[rr][cc] = True
            cells.append(
                TableCell(
                    row=r, col=c, text=" ".join(str(value).split()),
                    row_span=row_span, col_span=col_span, is_header=r < header_rows,
                )
            )
    table = Table(num_rows=num_rows, num_cols=num_cols, cells=cells, header_rows=header_rows)
    table.html = table.to_html()
    return table


def _cells(lines: list[Line], words: list[LayerWord]) -> list[_Cell]:
    by_line: dict[tuple[int, int], list[LayerWord]] = {}
    for word in words:
        by_line.setdefault((word.block, word.line), []).append(word)
    cells = []
    for index, line in enumerate(lines):
        line_words = sorted((w for n in line.numbers for w in by_line.get((line.block, n), ())),
                            key=lambda w: w.bbox[0])
        if not line_words:
            cells.append(_Cell(line.text, line.bbox, line.is_bold, index))
            continue
        group = [line_words[0]]
        for word in line_words[1:]:
            if word.bbox[0] - group[-1].bbox[2] > CELL_GAP * line.size:
                cells.append(_cell(group, line, index))
                group = []
            group.append(word)
        cells.append(_cell(group, line, index))
    return cells


def _cell(words: list[LayerWord], line: Line, index: int) -> _Cell:
    return _Cell(" ".join(w.text for w in words), union([w.bbox for w in words]),
                 line.is_bold, index)


def _rows(cells: list[_Cell]) -> list[list[_Cell]]:
    """Cells grouped into rows (vertical overlap), rows top to bottom, cells left to right."""
    rows: list[list[_Cell]] = []
    band = (0.0, 0.0)
    for cell in sorted(cells, key=lambda c: (c.bbox[1] + c.bbox[3]) / 2):
        y0, y1 = cell.bbox[1], cell.bbox[3]
        overlap = min(y1, band[1]) - max(y0, band[0])
        if rows and overlap >= 0.5 * min(y1 - y0, band[1] - band[0]):
            rows[-1].append(cell)
            band = (min(band[0], y0), max(band[1], y1))
        else:
            rows.append([cell])
            band = (y0, y1)
    return [sorted(row, key=lambda c: c.bbox[0]) for row in rows]


def _runs(rows: list[list[_Cell]]) -> list[list[list[_Cell]]]:
    """Maximal runs of consecutive rows of two or more cells, close enough to each other."""
    runs: list[list[list[_Cell]]] = []
    current: list[list[_Cell]] = []
    for row in rows:
        if len(row) < 2:
            if len(current) >= MIN_ROWS:
                runs.append(current)
            current = []
            continue
        if current:
            above = max(c.bbox[3] for c in current[-1])
            height = max(c.bbox[3] - c.bbox[1] for c in row)
            if min(c.bbox[1] for c in row) - above > MAX_ROW_GAP * height:
                if len(current) >= MIN_ROWS:
                    runs.append(current)
                current = []
        current.append(row)
    if len(current) >= MIN_ROWS:
        runs.append(current)
    return runs


def _table(run: list[list[_Cell]]) -> LayerTable | None:
    cells = [cell for row in run for cell in row]
    if median(len(c.text) for c in cells) > MAX_CELL_CHARS:
        return None
    columns = _columns(cells)
    if len(columns) < 2:
        return None
    grid: list[list[str]] = []
    by_column: list[list[_Cell]] = [[] for _ in columns]
    for row in run:
        texts = [""] * len(columns)
        for cell in row:
            col = next(i for i, (x0, x1) in enumerate(columns) if x0 <= cell.bbox[0] <= x1)
            texts[col] = f"{texts[col]} {cell.text}".strip()
            by_column[col].append(cell)
        grid.append(texts)
    if sum(len(cells) == 1 for cells in by_column) > 1 or not all(
            _is_aligned(cells) for cells in by_column):
        return None  # words of loosely set prose, not columns
    numeric_rows = sum(any(_DIGIT.search(t) for t in row) for row in grid[1:])
    if len(columns) == 2 and numeric_rows < 0.5 * (len(grid) - 1):
        return None
    bold = [all(c.is_bold for c in row) for row in run]
    header_rows = 0
    if bold[0] and not all(bold[1:]):
        header_rows = 1
    elif not any(_DIGIT.search(t) for t in grid[0]) and numeric_rows > 0.5 * (len(grid) - 1):
        header_rows = 1
    return LayerTable(bbox=union([c.bbox for c in cells]), rows=grid, header_rows=header_rows)


def _is_aligned(cells: list[_Cell]) -> bool:
    """Whether most of a column's cells share a left edge, a right edge or a centre."""
    for edge in (lambda b: b[0], lambda b: b[2], lambda b: (b[0] + b[2]) / 2):
        values = [edge(c.bbox) for c in cells]
        best = max(sum(abs(v - w) <= ALIGN_TOLERANCE for w in values) for v in values)
        if best >= MIN_ALIGNED * len(values):
            return True
    return False


def _columns(cells: list[_Cell]) -> list[tuple[float, float]]:
    """The x-ranges the cells cover, overlapping ones merged, left to right."""
    spans = sorted((c.bbox[0], c.bbox[2]) for c in cells)
    columns = [list(spans[0])]
    for x0, x1 in spans[1:]:
        if x0 <= columns[-1][1] + 1.0:
            columns[-1][1] = max(columns[-1][1], x1)
        else:
            columns.append([x0, x1])
    return [(x0, x1) for x0, x1 in columns]
