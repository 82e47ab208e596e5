"""Tables that run across pages, merged when their headers match.

A table continues on the next page when it is the last table of its page, the next page's
first table has the same number of columns, and both have header rows whose text is the same
(case and white space folded). The continuation's repeated header rows are dropped and its
body rows appended. A table with no header never merges: we do not guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dsocr_connectors.document import Block, Document, Table, TableCell


@dataclass
class TableRef:
    """Where one table (or one part of a merged table) came from."""

    page: int
    block: int
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    caption: str | None = None


@dataclass
class DocumentTable:
    """A table of a document with its provenance: one part, or several merged."""

    table: Table
    parts: list[TableRef]

    @property
    def page(self) -> int:
        return self.parts[0].page

    @property
    def caption(self) -> str | None:
        return next((p.caption for p in self.parts if p.caption), None)


def document_tables(document: Document, *, merge: bool = True) -> list[DocumentTable]:
    """Every table of `document` in reading order, continued tables merged if `merge`."""
    out: list[DocumentTable] = []
    previous_last: DocumentTable | None = None  # the last table of the previous page
    for page in document.pages:
        tables = [b for b in page.blocks if b.table is not None]
        for i, block in enumerate(tables):
            ref = TableRef(page.number, block.index,
                           [(b.x1, b.y1, b.x2, b.y2) for b in block.boxes],
                           _caption(page.blocks, block))
            assert block.table is not None
            if (i == 0 and merge and previous_last is not None
                    and previous_last.parts[-1].page == page.number - 1
                    and headers_match(previous_last.table, block.table)):
                previous_last.table = append_rows(previous_last.table, block.table)
                previous_last.parts.append(ref)
                continue
            out.append(DocumentTable(block.table, [ref]))
        previous_last = out[-1] if tables and out and out[-1].parts[-1].page == page.number else None
    return out


def headers_match(first: Table, second: Table) -> bool:
    if first.num_cols != second.num_cols or not first.header_rows or not second.header_rows:
        return False
    if first.header_rows != second.header_rows:
        return False
    head = first.grid()[: first.header_rows]
    other = second.grid()[: second.header_rows]
    return _fold(head) == _fold(other)


def append_rows(first: Table, second: Table) -> Table:
    """`first` with the body rows of `second` (its header rows dropped) appended."""
    offset = first.num_rows - second.header_rows
    cells = list(first.cells) + [
        TableCell(**{**c.model_dump(), "row": c.row + offset})
        for c in second.cells if c.row >= second.header_rows
    ]
    return Table(
        num_rows=first.num_rows + second.num_rows - second.header_rows,
        num_cols=first.num_cols,
        cells=cells,
        header_rows=first.header_rows,
        html=first.html + "\n" + second.html,
        flags=sorted(set(first.flags) | set(second.flags) | {"merged_across_pages"}),
    )


def _fold(rows: list[list[str]]) -> list[list[str]]:
    return [[" ".join(cell.lower().split()) for cell in row] for row in rows]


_CAPTION_START = re.compile(r"^\s*(<center>)?\s*(table|tab\.|tabelle|tableau|表)\s*\d", re.I)


def _caption(blocks: list[Block], table_block: Block) -> str | None:
    """The nearest table caption before or just after the table block: a `table_caption`
    block, or a text block that starts like one ("Table 3:", "表2")."""
    position = blocks.index(table_block)
    for neighbour in (blocks[position - 1: position], blocks[position + 1: position + 2]):
        for block in neighbour:
            if block.type.value == "table_caption" or (
                block.type.value == "text" and _CAPTION_START.match(block.content)
            ):
                return block.content.strip()
    return None
