"""Tables that run across pages: linked in the Document, merged wherever tables are read.

`link_continued_tables(doc)` is the one place a continuation is recognised. A table on page
N+1 continues the last table of page N when:
- the two sit at the page boundary: nothing but page furniture, table footnotes or a
  "continued" note follows the first on its page, and nothing but furniture and captions
  precedes the second on its page (when both have boxes, the first reaches the lower half
  of its page and the second starts in the upper half);
- they have the same number of columns;
- the second has no header of its own, or repeats the first's header rows (case and white
  space folded), or a caption above it says it is continued ("Table 1 (continued)",
  "续表", "Fortsetzung", ...). A different caption ("Table 2: ...") above it, or a different
  header without a continuation caption, means a new table.
Linking sets `Block.continued_by` on the first part and `Block.continues` on the second;
the parts themselves are never changed, so nothing of either is lost.

`merged_table` follows the links and appends the rows of every continuation (repeated
header rows dropped, a differing header kept as rows); `merged_view` is a copy of the
document with each chain in its first part, for the Markdown export; `document_tables`
lists the tables of a document, continued ones merged, with the provenance of each part
(`dsocr tables` exports these).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dsocr_connectors.document import Block, BlockRef, BlockType, Document, Page, Table

_FURNITURE = {BlockType.HEADER, BlockType.FOOTER, BlockType.PAGE_NUMBER}
TABLE_CAPTION_START = re.compile(r"^\s*(<center>)?\s*(table|tab\.|tabelle|tableau|tabla|表)\s*\d", re.I)
CONTINUED = re.compile(
    r"\bcontinued\b|\bcont(?:'d|\.|d)|\bfortsetzung\b|\bforts\.|\(suite\)|\bsuite\b"
    r"|continuaci[oó]n|续表|[（(]续[)）]|\(cont\b", re.I)
MAX_NOTE = 120  # a "continued" note or caption is short; longer text is content


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


def _is_table(block: Block) -> bool:
    return block.table is not None and block.chart is None and block.table.num_cols > 0


def _text(block: Block) -> str:
    return " ".join(re.sub(r"</?center>", "", block.content, flags=re.I).split())


def is_continuation_note(block: Block) -> bool:
    """A short caption or text saying a table is continued ("Table 1 (continued)", "续表")."""
    text = _text(block)
    return (block.type in (BlockType.TABLE_CAPTION, BlockType.TEXT, BlockType.TABLE_FOOTNOTE)
            and len(text) <= MAX_NOTE and CONTINUED.search(text) is not None)


def is_table_caption(block: Block) -> bool:
    """A `table_caption` block, or a short text that starts like one ("Table 3:", "表2")."""
    return block.type == BlockType.TABLE_CAPTION or (
        block.type == BlockType.TEXT and len(_text(block)) <= 4 * MAX_NOTE
        and TABLE_CAPTION_START.match(block.content) is not None)


def _last_table(page: Page) -> Block | None:
    """The page's last table when only furniture, footnotes or notes follow it."""
    for block in reversed(page.blocks):
        if block.type in _FURNITURE or block.type == BlockType.TABLE_FOOTNOTE:
            continue
        if is_continuation_note(block):
            continue
        return block if _is_table(block) else None
    return None


def _first_table(page: Page) -> tuple[Block | None, list[Block]]:
    """The page's first table when only furniture and captions precede it, and the captions."""
    captions: list[Block] = []
    for block in page.blocks:
        if block.type in _FURNITURE:
            continue
        if _is_table(block):
            return block, captions
        if is_continuation_note(block) or is_table_caption(block):
            captions.append(block)
            continue
        return None, captions
    return None, captions


def _fold(rows: list[list[str]]) -> list[list[str]]:
    return [[" ".join(cell.lower().split()) for cell in row] for row in rows]


def repeated_header_rows(first: Table, second: Table) -> int:
    """How many leading rows of `second` repeat the header rows of `first` (0 if none)."""
    count = first.header_rows
    if not count or second.num_rows < count or first.num_cols != second.num_cols:
        return 0
    return count if _fold(second.grid()[:count]) == _fold(first.grid()[:count]) else 0


def headers_match(first: Table, second: Table) -> bool:
    """Both tables have header rows, and they are the same (case and white space folded)."""
    return (bool(second.header_rows) and second.header_rows == first.header_rows
            and repeated_header_rows(first, second) == first.header_rows)


def _box_edges(block: Block) -> tuple[int, int] | None:
    if not block.boxes:
        return None
    return min(b.y1 for b in block.boxes), max(b.y2 for b in block.boxes)


def _caption_of(page: Page, block: Block) -> str | None:
    """The nearest table caption before or just after the table block."""
    position = page.blocks.index(block)
    for neighbour in (page.blocks[position - 1: position], page.blocks[position + 1: position + 2]):
        for other in neighbour:
            if is_table_caption(other):
                return other.content.strip()
    return None


def continues(first_page: Page, first: Block, second: Block, captions: list[Block]) -> bool:
    """Whether table `second` (after `captions` on the next page) continues `first`."""
    assert first.table is not None and second.table is not None
    if first.table.num_cols != second.table.num_cols:
        return False
    top, bottom = _box_edges(second), _box_edges(first)
    if top is not None and bottom is not None and (bottom[1] < 500 or top[0] > 500):
        return False
    said_continued = any(is_continuation_note(c) for c in captions)
    first_caption = " ".join((_caption_of(first_page, first) or "").lower().split())
    new_caption = any(not is_continuation_note(c) and _text(c).lower() != first_caption
                      for c in captions)
    if new_caption and not said_continued:
        return False
    if repeated_header_rows(first.table, second.table) or not second.table.header_rows:
        return True
    return said_continued


def link_continued_tables(doc: Document) -> int:
    """Link the tables of `doc` that continue across page breaks (in place, idempotent).

    Call it once a document is complete (all its pages in order). Existing links are kept.

    Returns:
        How many new links were made.
    """
    made = 0
    for before, page in zip(doc.pages, doc.pages[1:]):
        if page.number != before.number + 1:
            continue
        first = _last_table(before)
        second, captions = _first_table(page)
        if first is None or second is None or first.continued_by or second.continues:
            continue
        if continues(before, first, second, captions):
            first.continued_by = BlockRef(page=page.number, block=second.index)
            second.continues = BlockRef(page=before.number, block=first.index)
            made += 1
    return made


def _find(doc: Document, ref: BlockRef) -> tuple[Page, Block] | None:
    for page in doc.pages:
        if page.number == ref.page:
            for block in page.blocks:
                if block.index == ref.block:
                    return page, block
    return None


def table_chain(doc: Document, page: Page, block: Block) -> list[tuple[Page, Block]]:
    """`block` and every part that continues it, in order (links must exist, see above)."""
    chain = [(page, block)]
    seen = {(page.number, block.index)}
    while chain[-1][1].continued_by is not None:
        found = _find(doc, chain[-1][1].continued_by)
        if found is None or (found[0].number, found[1].index) in seen or not _is_table(found[1]):
            break
        seen.add((found[0].number, found[1].index))
        chain.append(found)
    return chain


def append_rows(first: Table, second: Table) -> Table:
    """`first` with the rows of `second` appended; rows repeating `first`'s header dropped.

    A header of `second` that differs from `first`'s is kept as rows (nothing is lost).
    """
    skip = repeated_header_rows(first, second)
    offset = first.num_rows - skip
    cells = [c.model_copy() for c in first.cells]
    for cell in second.cells:
        end = cell.row + cell.row_span
        if end <= skip:
            continue
        row = max(cell.row, skip)
        cells.append(cell.model_copy(update={
            "row": row + offset, "row_span": end - row,
            "is_header": False if cell.row >= second.header_rows else cell.is_header}))
    flags = set(first.flags) | set(second.flags) | {"merged_across_pages"}
    if second.header_rows and not skip:
        flags.add("continuation_header_kept")
    return Table(
        num_rows=first.num_rows + second.num_rows - skip,
        num_cols=first.num_cols,
        cells=cells,
        header_rows=first.header_rows,
        html=first.html + "\n" + second.html,
        scale=first.scale if first.scale is not None else second.scale,
        currency=first.currency or second.currency,
        flags=sorted(flags),
    )


def merged_table(doc: Document, page: Page, block: Block) -> Table:
    """The table of `block` with the rows of every part continuing it appended."""
    chain = table_chain(doc, page, block)
    table = chain[0][1].table
    assert table is not None
    for _, part in chain[1:]:
        assert part.table is not None
        table = append_rows(table, part.table)
    return table


def merged_view(doc: Document) -> Document:
    """A copy of `doc` whose first parts hold their merged tables and whose continuation
    parts hold only a note saying where their rows went (for the Markdown export)."""
    if not any(b.continued_by for p in doc.pages for b in p.blocks):
        return doc
    view = doc.model_copy(deep=True)
    for page in view.pages:
        for block in page.blocks:
            if block.continued_by is not None and block.continues is None and _is_table(block):
                chain = table_chain(view, page, block)
                block.table = merged_table(view, page, block)
                for _, part in chain[1:]:  # the part stays on its page, as a note
                    part.table = None
                    part.content = (f"<!-- table continued from page {page.number}: its rows "
                                    f"are in the table there -->")
    return view


def document_tables(document: Document, *, merge: bool = True) -> list[DocumentTable]:
    """Every table of `document` in reading order, continued tables merged if `merge`.

    With `merge`, continued tables are linked first (`link_continued_tables`, in place).
    """
    if merge:
        link_continued_tables(document)
    out: list[DocumentTable] = []
    for page in document.pages:
        for block in page.blocks:
            if block.table is None or (merge and block.continues is not None
                                       and _find(document, block.continues) is not None):
                continue
            chain = table_chain(document, page, block) if merge else [(page, block)]
            refs = [TableRef(p.number, b.index, [(x.x1, x.y1, x.x2, x.y2) for x in b.boxes],
                             _caption_of(p, b)) for p, b in chain]
            table = merged_table(document, page, block) if merge else block.table
            out.append(DocumentTable(table, refs))
    return out
