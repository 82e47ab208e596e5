"""Heading paths: the headings each block sits under, computed once over a whole document.

A title or section heading of level L closes every open heading of level >= L and opens
itself. One exception keeps table titles from leaking: a heading that only titles a table
("Table 3: Population by age", or a heading followed by a table and then by a heading of
its level or above, another table or the end of the document) is open only over that table, its
captions and footnotes, and its continuation on the next page; after it the path is what
it was before the heading. So a statistical table's title is the section of the table's
chunks and of nothing after them.
"""

from __future__ import annotations

from collections.abc import Iterable

from dsocr_connectors.deep.table_merge import (
    TABLE_CAPTION_START,
    is_continuation_note,
    is_table_caption,
)
from dsocr_connectors.document import Block, BlockType, Document
from splitters.render import HEADING_TYPES, heading_level, heading_text

Ref = tuple[int, int]  # (page number, block index)
_SKIPPED = {BlockType.HEADER, BlockType.FOOTER, BlockType.PAGE_NUMBER}
_AROUND_TABLE = {BlockType.TABLE_CAPTION, BlockType.TABLE_FOOTNOTE}


def _is_heading(block: Block) -> bool:
    return block.type in HEADING_TYPES and bool(heading_text(block))


def _is_table(block: Block) -> bool:
    return block.table is not None and block.chart is None


def _around(block: Block) -> bool:
    return block.type in _AROUND_TABLE or is_continuation_note(block) or is_table_caption(block)


def _scope_end(blocks: list[tuple[int, Block]], i: int) -> int | None:
    """Where the scope of table title `blocks[i]` ends (exclusive), or None: a real section."""
    j = i + 1
    while j < len(blocks) and _around(blocks[j][1]) and not _is_table(blocks[j][1]):
        j += 1
    if j == len(blocks) or not _is_table(blocks[j][1]):
        return None
    k = j + 1
    while k < len(blocks) and (_around(blocks[k][1]) or blocks[k][1].continues is not None):
        k += 1
    titled = TABLE_CAPTION_START.match(heading_text(blocks[i][1])) is not None
    if titled or k == len(blocks) or _is_table(blocks[k][1]):
        return k
    following = blocks[k][1]
    if _is_heading(following) and heading_level(following) <= heading_level(blocks[i][1]):
        return k  # a sibling heading next: the table was all this heading titled
    return None


Heading = tuple[int, str]  # (level, text)


def _walk(doc: Document, open_headings: Iterable[Heading]
          ) -> tuple[dict[Ref, tuple[Heading, ...]], dict[int, list[Heading]]]:
    """Open headings at every block, and where each page starts."""
    start = tuple((int(level), str(text)) for level, text in open_headings)
    blocks = [(p.number, b) for p in doc.pages for b in p.blocks if b.type not in _SKIPPED]
    headings = list(start)
    saved: list[Heading] | None = None
    scope_end: int | None = None
    found: dict[Ref, tuple[Heading, ...]] = {}
    at_start: dict[int, list[Heading]] = {}
    for i, (page, block) in enumerate(blocks):
        if scope_end is not None and i >= scope_end:
            headings, saved, scope_end = saved or [], None, None
        at_start.setdefault(page, list(headings))
        if _is_heading(block):
            end = _scope_end(blocks, i)
            if end is not None and saved is None:
                saved, scope_end = list(headings), end
            level = heading_level(block)
            headings = [h for h in headings if h[0] < level] + [(level, heading_text(block))]
        found[(page, block.index)] = tuple(headings)
    last = start
    for page_ in doc.pages:
        at_start.setdefault(page_.number, list(last))
        for block in page_.blocks:
            last = found.setdefault((page_.number, block.index), last)
    return found, at_start


def open_headings_by_block(doc: Document,
                           open_headings: Iterable[Heading] = ()) -> dict[Ref, tuple[Heading, ...]]:
    """The (level, text) headings open at every block of `doc` (a heading ends its own).

    Page furniture gets the headings of the block before it.
    """
    return _walk(doc, open_headings)[0]


def heading_paths(doc: Document,
                  open_headings: Iterable[Heading] = ()) -> dict[Ref, tuple[str, ...]]:
    """The heading path of every block of `doc` (a heading's own path ends with itself).

    Args:
        doc: the document, pages in order.
        open_headings: (level, text) of headings open before `doc` starts.

    Returns:
        (page number, block index) -> heading texts, outermost first.
    """
    return {ref: tuple(text for _, text in headings)
            for ref, headings in open_headings_by_block(doc, open_headings).items()}


def headings_at_page_start(doc: Document) -> dict[int, list[Heading]]:
    """For each page number, the (level, text) headings open where that page starts (a
    table title's scope ends with its table, so it is open on the next page only while
    that page continues the table)."""
    return _walk(doc, ())[1]
