"""Tables too long for one chunk -> row groups, each with the header rows repeated.

The header is the table's `header_rows` (a header cell whose row span reaches into the body
is clipped there, and its text repeated on the body rows it covers). Body rows are packed
into groups up to the chunk size, cutting preferably between row bands (ranges no row span
crosses, see `row_bands`); a band that is larger than a chunk on its own is cut between
rows anyway, and every cell spanning the cut is repeated on both sides, so each group reads
on its own and no cell text is lost. A continued table (linked across pages) arrives here
merged, with the row ranges of its parts, so each group cites only the parts it holds.
"""

from __future__ import annotations

from dsocr_connectors.document import Table, TableCell
from splitters.render import table_lines
from splitters.sizing import LengthFunction


def row_bands(table: Table) -> list[tuple[int, int]]:
    """Row ranges [start, end) that no cell's row span crosses: where a table may be cut."""
    reach = [r + 1 for r in range(table.num_rows)]
    for cell in table.cells:
        if 0 <= cell.row < table.num_rows:
            end = min(cell.row + cell.row_span, table.num_rows)
            reach[cell.row] = max(reach[cell.row], end)
    bands, start = [], 0
    while start < table.num_rows:
        end, row = reach[start], start
        while row < end:
            end = max(end, reach[row])
            row += 1
        bands.append((start, end))
        start = end
    return bands


def _clip(cell: TableCell, low: int, high: int, shift: int, header_rows: int) -> TableCell | None:
    """The part of `cell` within rows [low, high), moved up by `shift` rows."""
    top = max(cell.row, low)
    bottom = min(cell.row + cell.row_span, high)
    if bottom <= top:
        return None
    return cell.model_copy(update={"row": top - shift, "row_span": bottom - top,
                                   "is_header": top - shift < header_rows and cell.is_header})


def sub_table(table: Table, header_rows: int, start: int, end: int) -> Table:
    """The header rows plus body rows [start, end) of `table`, as a table of its own.

    Cells spanning into the range from outside it are clipped to it (their text kept).
    """
    return _sub_table(table, _CellIndex(table), header_rows, start, end)


class _CellIndex:
    """A table's cells by the row they start in, and those spanning several rows."""

    def __init__(self, table: Table) -> None:
        self.by_row: dict[int, list[TableCell]] = {}
        for cell in table.cells:
            self.by_row.setdefault(cell.row, []).append(cell)
        self.tall = [c for c in table.cells if c.row_span > 1]

    def overlapping(self, low: int, high: int) -> list[TableCell]:
        """The cells with a row in [low, high), in row order."""
        found = {id(c): c for c in self.tall if c.row < low < c.row + c.row_span}
        for row in range(low, high):
            found.update((id(c), c) for c in self.by_row.get(row, ()))
        return sorted(found.values(), key=lambda c: (c.row, c.col))


def _sub_table(table: Table, index: _CellIndex, header_rows: int, start: int,
               end: int) -> Table:
    head = [c for c in (_clip(cell, 0, header_rows, 0, header_rows)
                        for cell in index.overlapping(0, header_rows)) if c]
    body = [c for c in (_clip(cell, start, end, start - header_rows, header_rows)
                        for cell in index.overlapping(start, end)) if c]
    return Table(
        num_rows=header_rows + end - start,
        num_cols=table.num_cols,
        cells=head + body,
        header_rows=header_rows,
        flags=list(table.flags),
    )


def _pieces(bands: list[tuple[int, int]], sizes: list[int], head: int,
            limit: int) -> list[tuple[int, int]]:
    """Bands, with each band too large for a chunk cut into single rows."""
    pieces: list[tuple[int, int]] = []
    for start, end in bands:
        if end - start > 1 and head + sum(sizes[start:end]) > limit:
            pieces.extend((row, row + 1) for row in range(start, end))
        else:
            pieces.append((start, end))
    return pieces


def row_groups(table: Table, limit: int, length: LengthFunction,
               first_limit: int | None = None) -> list[tuple[Table, str, tuple[int, int]]]:
    """The table cut into parts that fit `limit` (the first part `first_limit`).

    Returns:
        (part table, its Markdown, (first, end) body row range in `table`) per part; one
        part holding the whole table when it has no body rows to repeat the header over.
    """
    header_rows = min(table.header_rows, table.num_rows)
    if header_rows >= table.num_rows:
        return [(table, "\n".join(sum(table_lines(table), [])), (0, table.num_rows))]
    header_lines, body_lines = table_lines(sub_table(table, header_rows, header_rows,
                                                     table.num_rows))
    head = length("\n".join(header_lines))
    sizes = [0] * header_rows + [length(line) + 1 for line in body_lines]
    body = Table(num_rows=table.num_rows, num_cols=table.num_cols,
                 cells=[c for c in (_clip(cell, header_rows, table.num_rows, 0, 0)
                                    for cell in table.cells) if c])
    bands = [(s, e) for s, e in row_bands(body) if s >= header_rows]
    groups: list[tuple[int, int]] = []
    size = head
    for start, end in _pieces(bands, sizes, head, limit):
        piece = sum(sizes[start:end])
        budget = first_limit if first_limit is not None and len(groups) == 1 else limit
        if groups and size + piece <= budget:
            groups[-1] = (groups[-1][0], end)
            size += piece
        else:
            groups.append((start, end))
            size = head + piece
    inside = {r for c in body.cells if c.row_span > 1 for r in range(c.row + 1, c.row + c.row_span)}
    parts = []
    index = _CellIndex(table)
    for start, end in groups:
        part = _sub_table(table, index, header_rows, start, end)
        lines = header_lines + body_lines[start - header_rows:end - header_rows]
        if start in inside or end in inside:  # a cut through a row span
            part.flags = sorted({*part.flags, "span_cut"})
        parts.append((part, "\n".join(lines), (start, end)))
    return parts
