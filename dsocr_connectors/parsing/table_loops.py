"""Loops in tables: cycles of rows ending a table, and cells repeating to the end of a row.

The rule is the one for text (`repetition.py`): only exact copies are cut (a row with other
numbers is another row), one copy of the unit stays, and there must be enough copies to be
certain. How many is enough depends on what else is known:
- rows, in a table the token limit left open (`unclosed_table/row/cell`): `MIN_OPEN_ROW_COPIES`
  copies of a cycle of 1..`MAX_ROW_PERIOD` rows before the row the limit cut off; in a table
  the model closed itself, `MIN_CLOSED_ROW_COPIES` (a blank form has a few equal rows);
- cells, in one row: `MIN_CELL_COPIES` copies of a cycle of 1..`MAX_CELL_PERIOD` cells ending
  the row, when that row is the one the limit cut off or has at least `MIN_CELL_COPIES`
  more cells than any other row (a header row of 700 cells over rows of 6).

Nothing is removed: the table gets `repetition` and `loop_start_row:N` /
`loop_start_cell:R:I` flags, the block a `rows_cut` / `cells_cut` repair; the exports cut.
"""

from __future__ import annotations

from dsocr_connectors.document import Block, Repair, Table, TableCell
from dsocr_connectors.parsing.repetition import trailing_cycle

MIN_OPEN_ROW_COPIES = 5
MIN_CLOSED_ROW_COPIES = 20
MAX_ROW_PERIOD = 8
MIN_CELL_COPIES = 8
MAX_CELL_PERIOD = 4
OPEN_TABLE_FLAGS = frozenset({"unclosed_table", "unclosed_row", "unclosed_cell"})


def _signature(cell: TableCell) -> tuple[str, int, int]:
    """What makes two cells copies: text and spans (not the header guess of the first row)."""
    return (cell.text, cell.row_span, cell.col_span)


def cells_by_row(table: Table) -> list[list[TableCell]]:
    """The cells of each row, in the order they were written."""
    rows: list[list[TableCell]] = [[] for _ in range(table.num_rows)]
    for cell in table.cells:
        rows[cell.row].append(cell)
    return rows


def _unit_text(rows: list[list[TableCell]]) -> str:
    return "\n".join(" | ".join(cell.text for cell in row) for row in rows)


def _mark_rows(block: Block, table: Table, rows: list[list[TableCell]], is_open: bool) -> int:
    """Flag a cycle of rows ending the table; returns the number of rows kept."""
    signatures = [tuple(_signature(cell) for cell in row) for row in rows]
    if is_open and signatures:
        signatures = signatures[:-1]  # the row the token limit cut off
    min_copies = MIN_OPEN_ROW_COPIES if is_open else MIN_CLOSED_ROW_COPIES
    cycle = trailing_cycle(signatures, min_copies, MAX_ROW_PERIOD)
    if cycle is None:
        return len(rows)
    table.flags = sorted({*table.flags, "repetition", f"loop_start_row:{cycle.start}"})
    block.repairs.append(
        Repair(
            kind="rows_cut",
            offset=cycle.start,
            length=len(rows) - cycle.start,
            unit=_unit_text(rows[cycle.start - cycle.period : cycle.start]),
            copies=round((len(signatures) - cycle.start) / cycle.period, 2),
        )
    )
    return cycle.start


def _mark_cells(block: Block, table: Table, rows: list[list[TableCell]], is_open: bool) -> None:
    for r, row in enumerate(rows):
        widest_other = max((len(other) for i, other in enumerate(rows) if i != r), default=None)
        is_cut_off = is_open and r == len(rows) - 1
        too_wide = widest_other is not None and len(row) >= widest_other + MIN_CELL_COPIES
        if not (is_cut_off or too_wide):
            continue
        cycle = trailing_cycle([_signature(cell) for cell in row], MIN_CELL_COPIES, MAX_CELL_PERIOD)
        if cycle is None:
            continue
        table.flags = sorted({*table.flags, "repetition", f"loop_start_cell:{r}:{cycle.start}"})
        block.repairs.append(
            Repair(
                kind="cells_cut",
                row=r,
                offset=cycle.start,
                length=len(row) - cycle.start,
                unit=" | ".join(c.text for c in row[cycle.start - cycle.period : cycle.start]),
                copies=round((len(row) - cycle.start) / cycle.period, 2),
            )
        )


def mark_table_loops(block: Block) -> None:
    """Flag loops of rows and of cells in the block's table (module docstring)."""
    table = block.table
    if table is None or not table.cells:
        return
    is_open = bool(OPEN_TABLE_FLAGS & set(table.flags))
    rows = cells_by_row(table)
    kept = _mark_rows(block, table, rows, is_open)
    _mark_cells(block, table, rows[:kept], is_open and kept == len(rows))
    if "repetition" in table.flags:
        block.flags = sorted({*block.flags, "repetition"})


def cut_table_loop(table: Table) -> Table:
    """A copy of `table` without the looped rows and cells its flags name, or `table`."""
    keep_rows = table.num_rows
    cell_cuts: dict[int, int] = {}
    for flag in table.flags:
        if flag.startswith("loop_start_row:"):
            keep_rows = min(keep_rows, int(flag.split(":")[1]))
        elif flag.startswith("loop_start_cell:"):
            _, row, start = flag.split(":")
            cell_cuts[int(row)] = int(start)
    if keep_rows == table.num_rows and not cell_cuts:
        return table
    cells = []
    for r, row in enumerate(cells_by_row(table)[:keep_rows]):
        for i, cell in enumerate(row):
            if i < cell_cuts.get(r, len(row)):
                cells.append(cell.model_copy(update={"row_span": min(cell.row_span, keep_rows - r)}))
    num_cols = max((c.col + c.col_span for c in cells), default=0)
    header_rows = min(table.header_rows, keep_rows)
    return table.model_copy(
        update={"cells": cells, "num_rows": keep_rows, "num_cols": num_cols, "header_rows": header_rows}
    )
