"""The second look that needs no model: typed table cells and SMILES found in text.

`annotate_table` writes each body cell's parsed number (value, kind, unit) into the table
itself, so a document's JSON carries typed tables; the cell text is never changed.
`annotate_page` does that for every table of a page, using the nearest caption for the scale.
"""

from __future__ import annotations

from dsocr_connectors.deep.numbers import detect_scale, parse_value
from dsocr_connectors.document import BlockType, Page, Table


def annotate_table(table: Table, *, caption: str | None = None) -> Table:
    """Fill `value`, `value_kind`, `unit` on body cells and `scale`/`currency` on the table."""
    header_text = " ".join(c.text for c in table.cells if c.row < table.header_rows)
    scale, currency = detect_scale(f"{caption or ''} {header_text}")
    table.scale, table.currency = scale, currency
    for cell in table.cells:
        if cell.row < table.header_rows or cell.is_header:
            continue
        parsed = parse_value(cell.text, scale=scale)
        cell.value, cell.value_kind = parsed.value, parsed.kind
        cell.unit = parsed.unit or (currency if parsed.kind == "number" else None)
    return table


def annotate_page(page: Page) -> Page:
    """Annotate every table on `page` (in place); returns the page."""
    for position, block in enumerate(page.blocks):
        if block.table is None:
            continue
        caption = None
        for neighbour in page.blocks[max(0, position - 1): position + 2]:
            if neighbour.type == BlockType.TABLE_CAPTION:
                caption = neighbour.content
                break
        annotate_table(block.table, caption=caption)
    return page
