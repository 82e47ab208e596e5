"""Blocks -> units: the pieces a chunk is built from, none of which is ever cut again.

Walking a document's blocks in reading order:
- a title or section heading is a unit of its own; every unit carries its heading path
  (`splitters.headings`: a table's own title is open over that table only);
- a table is one unit, or, when longer than the chunk size, row groups with the header rows
  repeated (`splitters.tables`); the first group leaves room for the headings and caption
  just above the table, which open its chunk. A table continued on the next page
  (`Block.continued_by`) is merged with its continuation first, and each group cites the
  parts (pages, boxes) its rows come from; the continuation is not chunked again;
- an equation, a chart, a SMILES string or a fenced code block is atomic;
- a paragraph (any other text) is split at sentence boundaries (`splitters.sentences`)
  only when longer than the chunk size, at spaces only when a single sentence is, and
  between characters only when a single word is (unspaced scripts, runaway loops);
- a block with no text (a figure whose caption is its own block) adds its boxes to the next
  unit (the previous one when the next opens a section), so its box is still cited; a
  document with no text at all has no units;
- a heading, and a caption just above its table or figure, is "sticky": it opens the chunk
  of the unit after it rather than closing a chunk (when both fit in one chunk);
- page furniture (headers, footers, page numbers) is left out by default (`skip_types`).
A unit longer than the chunk size on its own is kept whole and marked `oversize`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dsocr_connectors.deep.table_merge import table_chain
from dsocr_connectors.document import Block, BlockType, Box, Document, Page, Table
from splitters.headings import heading_paths
from splitters.render import CENTER_TAGS, HEADING_TYPES, block_text
from splitters.sentences import split_paragraph
from splitters.sizing import LengthFunction
from splitters.tables import row_groups

FURNITURE = frozenset({BlockType.HEADER, BlockType.FOOTER, BlockType.PAGE_NUMBER})
_CAPTIONS = {BlockType.TABLE_CAPTION.value: BlockType.TABLE.value,
             BlockType.FIGURE_CAPTION.value: BlockType.FIGURE.value}
# doc.metadata["continued_tables"]: continuation parts whose rows another document chunks
CHUNKED_WITH_FIRST_PART = "chunked_with_first_part"


@dataclass
class Unit:
    """An unbreakable piece of text with the blocks (and boxes) it came from."""

    text: str
    length: int
    heading_path: tuple[str, ...]
    refs: list[tuple[int, int]] = field(default_factory=list)  # (page, block index)
    boxes: list[tuple[int, Box]] = field(default_factory=list)  # (page, box)
    types: list[str] = field(default_factory=list)
    is_heading: bool = False
    is_sticky: bool = False  # opens the chunk of the next unit: a heading, a caption above
    table: Table | None = None  # the table, or the row group, this unit renders
    part: tuple[int, int] | None = None  # (k, n) when its block was split into n parts
    is_oversize: bool = False
    is_standalone: bool = False  # a chart or a chemical structure: a chunk of its own


def _is_atomic(block: Block) -> bool:
    return (
        block.equation is not None
        or block.chart is not None
        or block.chemistry is not None
        or block.type in (BlockType.EQUATION, BlockType.FIGURE)
        or block.content.lstrip().startswith("```")
    )


def _plain(text: str) -> str:
    """Text without `<center>` tags and with whitespace collapsed, to compare captions."""
    return " ".join(CENTER_TAGS.sub("", text).split())


def _table_units(table: Table, base: Unit, limit: int, length: LengthFunction,
                 first_limit: int, parts: list[tuple[int, Block, int]]) -> list[Unit]:
    """A table as one unit, or as row groups; `parts` are (page, block, first row) of the
    pages it was merged from, so each group cites the parts it holds."""
    if base.length <= limit or table.num_rows == 0 or table.num_cols == 0:
        return [base]
    groups = row_groups(table, limit, length, first_limit)
    if len(groups) == 1:
        base.is_oversize = True
        return [base]
    units = []
    for k, (part, text, (start, end)) in enumerate(groups, 1):
        held = [(page, block) for i, (page, block, first) in enumerate(parts)
                if first < end and (i + 1 == len(parts) or parts[i + 1][2] > start)] or [
            (parts[0][0], parts[0][1])]
        size = length(text)
        units.append(Unit(
            text=text, length=size, heading_path=base.heading_path,
            refs=[(page, block.index) for page, block in held],
            boxes=[(page, box) for page, block in held for box in block.boxes],
            types=list(base.types), table=part, part=(k, len(groups)), is_oversize=size > limit,
        ))
    return units


def _merged(doc: Document, page: Page,
            block: Block) -> tuple[Block, list[tuple[int, Block, int]]]:
    """The block with its continued table merged in, and (page, part, first row) per part."""
    chain = table_chain(doc, page, block) if block.continued_by is not None else []
    if len(chain) < 2 or block.chart is not None:
        return block, [(page.number, block, 0)]
    from dsocr_connectors.deep.table_merge import append_rows

    table = block.table
    assert table is not None
    parts = [(page.number, block, 0)]
    for part_page, part in chain[1:]:
        assert part.table is not None
        parts.append((part_page.number, part, table.num_rows))
        table = append_rows(table, part.table)
    return block.model_copy(update={"table": table}), parts


def _block_units(block: Block, parts: list[tuple[int, Block, int]], path: tuple[str, ...],
                 limit: int, length: LengthFunction, captions: frozenset[str] = frozenset(),
                 prefix: int = 0, language: str = "en") -> list[Unit]:
    caption = _plain(block.figure.caption or "") if block.figure else ""
    shown = bool(caption) and not any(caption in c or c in caption for c in captions if c)
    text = block_text(block, with_caption=shown)
    base = Unit(
        text=text, length=length(text) if text else 0, heading_path=path,
        refs=[(n, b.index) for n, b, _ in parts],
        boxes=[(n, box) for n, b, _ in parts for box in b.boxes],
        types=[block.type.value], table=block.table,
    )
    if block.table is not None and block.chart is None:  # a chart's table is its data: whole
        return _table_units(block.table, base, limit, length, max(1, limit - prefix), parts)
    if _is_atomic(block) or base.length <= limit:
        base.is_oversize = base.length > limit
        base.is_standalone = block.chart is not None or block.chemistry is not None
        return [base]
    pieces = split_paragraph(text, limit, length, language)
    return [
        Unit(text=piece, length=length(piece), heading_path=path, refs=list(base.refs),
             boxes=list(base.boxes), types=list(base.types), part=(k, len(pieces)),
             is_oversize=length(piece) > limit)
        for k, piece in enumerate(pieces, 1)
    ]


def carried_heading_paths(doc: Document, open_headings: Iterable[tuple[int, str]] = ()) -> dict:
    """Heading paths: computed over `doc`, or those computed over the whole document and
    carried in `doc.metadata["heading_paths"]` ([page, block index, path] triples)."""
    paths = heading_paths(doc, open_headings)
    for page, index, path in doc.metadata.get("heading_paths", ()):
        paths[(int(page), int(index))] = tuple(path)
    return paths


def document_units(
    doc: Document,
    *,
    chunk_size: int,
    length: LengthFunction,
    skip_types: Iterable[BlockType] = FURNITURE,
    open_headings: Iterable[tuple[int, str]] = (),
    language: str = "en",
) -> list[Unit]:
    """The units of `doc` in reading order, pages in order, with their heading paths.

    Args:
        doc: the document.
        chunk_size: the size above which a table or paragraph is split.
        length: the length function sizes are measured with.
        skip_types: block types left out (default: headers, footers, page numbers).
        open_headings: (level, text) of the headings already open where `doc` starts (a
            page cut out of a longer document), outermost first.
        language: the language sentences are split by (see `splitters.sentences`).

    Returns:
        The units; no unit holds text of two blocks (empty blocks add only boxes), except a
        table merged with its continuation.
    """
    skipped = frozenset(skip_types)
    paths = carried_heading_paths(doc, open_headings)
    present = {(p.number, b.index) for p in doc.pages for b in p.blocks}
    elsewhere = doc.metadata.get("continued_tables") == CHUNKED_WITH_FIRST_PART
    units: list[Unit] = []
    pending_empty: list[Unit] = []  # text-less blocks waiting for the next unit
    for page in doc.pages:
        captions = frozenset(_plain(b.content) for b in page.blocks
                             if b.type == BlockType.FIGURE_CAPTION)
        for block in page.blocks:
            if block.type in skipped:
                continue
            if block.continues is not None and block.table is not None and (
                    elsewhere or (block.continues.page, block.continues.block) in present):
                continue  # its rows are chunked with the part it continues
            path = paths[(page.number, block.index)]
            prefix = _sticky_prefix(units, length) if block.table is not None else 0
            merged, parts = _merged(doc, page, block)
            new = _block_units(merged, parts, path, chunk_size, length, captions, prefix,
                               language)
            if not new[0].text:
                pending_empty.extend(new)
                continue
            new[0].is_heading = new[0].is_sticky = block.type in HEADING_TYPES
            if pending_empty:  # into the next unit, unless that opens a new section
                _absorb(units[-1] if new[0].is_heading and units else new[0], pending_empty)
                pending_empty = []
            units.extend(new)
    if pending_empty and units:
        _absorb(units[-1], pending_empty)
    for unit, following in zip(units, units[1:], strict=False):  # a caption above its table
        if unit.types[-1] in _CAPTIONS and following.types[0] == _CAPTIONS[unit.types[-1]]:
            unit.is_sticky = True
    return units


def _sticky_prefix(units: list[Unit], length: LengthFunction) -> int:
    """How long the headings and table caption that will open a table's first chunk are."""
    size = 0
    for unit in reversed(units):
        if not (unit.is_heading or unit.types[-1] == BlockType.TABLE_CAPTION.value):
            break
        size += unit.length + length("\n\n")
    return size


def _absorb(unit: Unit, empty: list[Unit]) -> None:
    """Give `unit` the blocks and boxes of text-less units, keeping reading order."""
    before = not unit.refs or empty[0].refs[0] < unit.refs[0]
    refs = [r for u in empty for r in u.refs]
    boxes = [b for u in empty for b in u.boxes]
    types = [t for u in empty for t in u.types]
    unit.refs = refs + unit.refs if before else unit.refs + refs
    unit.boxes = boxes + unit.boxes if before else unit.boxes + boxes
    unit.types = types + unit.types if before else unit.types + types
