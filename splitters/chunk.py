"""What the splitters produce: a `Chunk`, text plus everything needed to cite and highlight it.

A chunk knows its source, its page span, the union of its boxes on each page (0..999 grid,
like `Box`), every block box it holds, the heading path it sits under, and which blocks it
came from. It knows nothing about LlamaIndex or LangChain; the connectors turn it into their
nodes and documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsocr_connectors.document import Box, Table


def union_box(boxes: list[Box]) -> Box:
    """The smallest box holding all `boxes` (which must not be empty)."""
    return Box(
        x1=min(b.x1 for b in boxes),
        y1=min(b.y1 for b in boxes),
        x2=max(b.x2 for b in boxes),
        y2=max(b.y2 for b in boxes),
    )


@dataclass
class Chunk:
    """A piece of one document, made of whole units (blocks or block parts) in reading order.

    Attributes:
        text: the chunk's Markdown, units joined by blank lines.
        source: the document's source (path or name).
        pages: (first, last) 1-based page numbers the chunk spans.
        page_boxes: per page, the union of the chunk's block boxes on that page (0..999).
        block_boxes: every block box in the chunk as (page, box), in reading order.
        heading_path: the headings the chunk sits under, outermost first.
        block_types: the distinct block types the chunk holds, in reading order.
        block_refs: (page, block index) of each distinct block the chunk holds.
        tables: the tables (or table parts, header rows repeated) the chunk holds.
        metadata: anything else: `oversize` when one unit alone exceeds the chunk size,
            `table_part` ("k/n") when the chunk holds a row group of a split table,
            `overlap_units` (how many leading units repeat the previous chunk's tail).
    """

    text: str
    source: str
    pages: tuple[int, int]
    page_boxes: dict[int, Box] = field(default_factory=dict)
    block_boxes: list[tuple[int, Box]] = field(default_factory=list)
    heading_path: list[str] = field(default_factory=list)
    block_types: list[str] = field(default_factory=list)
    block_refs: list[tuple[int, int]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def page_numbers(self) -> list[int]:
        """Every page number from the first to the last page of the chunk."""
        return list(range(self.pages[0], self.pages[1] + 1))
