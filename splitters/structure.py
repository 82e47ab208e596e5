"""Blocks -> units: the pieces a chunk is built from, none of which is ever cut again.

Walking a document's blocks in reading order:
- a title or section heading updates the heading path (a heading of level L closes every
  open heading of level >= L) and is a unit of its own;
- a table is one unit, or, when longer than the chunk size, row groups with the header rows
  repeated; a group never ends inside a row or inside a row span; the first group leaves
  room for the headings and caption just above the table, which open its chunk;
- an equation, a chart, a SMILES string or a fenced code block is atomic;
- a paragraph (any other text) is split at sentence boundaries only when longer than the
  chunk size, at spaces only when a single sentence is, and between characters only when
  a single word is (unspaced scripts, runaway loops);
- a block with no text (a figure whose caption is its own block) adds its boxes to the next
  unit (the previous one when the next opens a section), so its box is still cited; a
  document with no text at all has no units;
- a heading, and a caption just above its table or figure, is "sticky": it opens the chunk
  of the unit after it rather than closing a chunk (when both fit in one chunk);
- page furniture (headers, footers, page numbers) is left out by default (`skip_types`).
A unit longer than the chunk size on its own is kept whole and marked `oversize`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dsocr_connectors.document import Block, BlockType, Box, Document, Table, TableCell
from splitters.render import (
    CENTER_TAGS,
    HEADING_TYPES,
    block_text,
    heading_level,
    heading_text,
    table_lines,
)
from splitters.sizing import LengthFunction

FURNITURE = frozenset({BlockType.HEADER, BlockType.FOOTER, BlockType.PAGE_NUMBER})
_CAPTIONS = {BlockType.TABLE_CAPTION.value: BlockType.TABLE.value,
             BlockType.FIGURE_CAPTION.value: BlockType.FIGURE.value}
_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？；])\s+|(?<=[。！？；])")


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


def _pack(pieces: list[str], joiner: str, limit: int, length: LengthFunction) -> list[str]:
    """Greedily join consecutive pieces while the summed lengths stay within `limit`.

    Summing piece lengths is exact for characters and an over-estimate for tokens (a join
    rarely adds tokens), and keeps packing linear; units are measured again afterwards.
    """
    packed: list[str] = []
    size = 0
    gap = length(joiner)
    for piece in pieces:
        piece_size = length(piece)
        if packed and size + gap + piece_size <= limit:
            packed[-1] = packed[-1] + joiner + piece
            size += gap + piece_size
        else:
            packed.append(piece)
            size = piece_size
    return packed


def _hard_split(text: str, limit: int, length: LengthFunction) -> list[str]:
    """Cut a text with no sentence end or space (CJK, a loop) into pieces within `limit`."""
    pieces = []
    while text:
        size = length(text)
        if size <= limit:
            pieces.append(text)
            break
        cut = max(1, len(text) * limit // size)
        while cut > 1 and length(text[:cut]) > limit:
            cut = max(1, cut * 9 // 10)
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces


def split_paragraph(text: str, limit: int, length: LengthFunction) -> list[str]:
    """Split `text` into pieces of at most `limit`: at sentence ends, else spaces, else anywhere.

    Only a text longer than `limit` is split; a single character longer than it stays whole.
    """
    if length(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sentence in (s for s in _SENTENCE_END.split(text) if s.strip()):
        if length(sentence) <= limit:
            pieces.append(sentence.strip())
            continue
        for word in _pack(sentence.split(), " ", limit, length):
            pieces.extend([word] if length(word) <= limit else _hard_split(word, limit, length))
    return _pack(pieces, " ", limit, length)


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


def sub_table(table: Table, header_rows: int, start: int, end: int) -> Table:
    """The header rows plus body rows [start, end) of `table`, as a table of its own."""
    cells: list[TableCell] = []
    for cell in table.cells:
        if cell.row < header_rows:
            cells.append(cell.model_copy())
        elif start <= cell.row < end:
            span = min(cell.row_span, end - cell.row)
            row = cell.row - start + header_rows
            cells.append(cell.model_copy(update={"row": row, "row_span": span}))
    return Table(
        num_rows=header_rows + end - start,
        num_cols=table.num_cols,
        cells=cells,
        header_rows=header_rows,
        flags=list(table.flags),
    )


def _table_units(block: Block, base: Unit, limit: int, length: LengthFunction,
                 first_limit: int) -> list[Unit]:
    table = block.table
    assert table is not None
    if base.length <= limit or table.num_rows == 0 or table.num_cols == 0:
        return [base]
    bands = row_bands(table)
    header_rows = min(table.header_rows, table.num_rows)
    header_end = 0
    if header_rows:  # the header ends at the end of the band holding its last row
        header_end = next(e for s, e in bands if s < header_rows <= e)
    body_bands = [(s, e) for s, e in bands if s >= header_end]
    if not body_bands:  # all header: nothing to repeat it over
        base.is_oversize = True
        return [base]
    header_lines, body_lines = table_lines(sub_table(table, header_end, header_end, table.num_rows))
    head_len = length("\n".join(header_lines))
    groups: list[tuple[int, int]] = []
    size = head_len
    for start, end in body_bands:
        band_len = sum(length(line) + 1 for line in body_lines[start - header_end:end - header_end])
        budget = first_limit if len(groups) == 1 else limit
        if groups and size + band_len <= budget:
            groups[-1] = (groups[-1][0], end)
            size += band_len
        else:
            groups.append((start, end))
            size = head_len + band_len
    units = []
    for k, (start, end) in enumerate(groups, 1):
        lines = header_lines + body_lines[start - header_end:end - header_end]
        text = "\n".join(lines)
        size = length(text)
        units.append(Unit(
            text=text, length=size, heading_path=base.heading_path, refs=list(base.refs),
            boxes=list(base.boxes), types=list(base.types),
            table=sub_table(table, header_end, start, end), part=(k, len(groups)),
            is_oversize=size > limit,
        ))
    return units


def _block_units(block: Block, page: int, path: tuple[str, ...], limit: int,
                 length: LengthFunction, captions: frozenset[str] = frozenset(),
                 prefix: int = 0) -> list[Unit]:
    caption = _plain(block.figure.caption or "") if block.figure else ""
    shown = bool(caption) and not any(caption in c or c in caption for c in captions if c)
    text = block_text(block, with_caption=shown)
    base = Unit(
        text=text, length=length(text) if text else 0, heading_path=path,
        refs=[(page, block.index)], boxes=[(page, b) for b in block.boxes],
        types=[block.type.value], table=block.table,
    )
    if block.table is not None and block.chart is None:  # a chart's table is its data: whole
        return _table_units(block, base, limit, length, max(1, limit - prefix))
    if _is_atomic(block) or base.length <= limit:
        base.is_oversize = base.length > limit
        base.is_standalone = block.chart is not None or block.chemistry is not None
        return [base]
    pieces = split_paragraph(text, limit, length)
    return [
        Unit(text=piece, length=length(piece), heading_path=path, refs=list(base.refs),
             boxes=list(base.boxes), types=list(base.types), part=(k, len(pieces)),
             is_oversize=length(piece) > limit)
        for k, piece in enumerate(pieces, 1)
    ]


def document_units(
    doc: Document,
    *,
    chunk_size: int,
    length: LengthFunction,
    skip_types: Iterable[BlockType] = FURNITURE,
    open_headings: Iterable[tuple[int, str]] = (),
) -> list[Unit]:
    """The units of `doc` in reading order, pages in order, with their heading paths.

    Args:
        doc: the document.
        chunk_size: the size above which a table or paragraph is split.
        length: the length function sizes are measured with.
        skip_types: block types left out (default: headers, footers, page numbers).
        open_headings: (level, text) of the headings already open where `doc` starts (a
            page cut out of a longer document), outermost first.

    Returns:
        The units; no unit holds text of two blocks (empty blocks add only boxes).
    """
    skipped = frozenset(skip_types)
    headings: list[tuple[int, str]] = [(int(level), str(text)) for level, text in open_headings]
    units: list[Unit] = []
    pending_empty: list[Unit] = []  # text-less blocks waiting for the next unit
    for page in doc.pages:
        captions = frozenset(_plain(b.content) for b in page.blocks
                             if b.type == BlockType.FIGURE_CAPTION)
        for block in page.blocks:
            if block.type in skipped:
                continue
            if block.type in HEADING_TYPES and heading_text(block):
                level = heading_level(block)
                headings = [h for h in headings if h[0] < level] + [(level, heading_text(block))]
            path = tuple(text for _, text in headings)
            prefix = _sticky_prefix(units, length) if block.table is not None else 0
            new = _block_units(block, page.number, path, chunk_size, length, captions, prefix)
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


def headings_at_page_start(doc: Document) -> dict[int, list[tuple[int, str]]]:
    """For each page number, the (level, text) headings open where that page starts."""
    headings: list[tuple[int, str]] = []
    at_start: dict[int, list[tuple[int, str]]] = {}
    for page in doc.pages:
        at_start[page.number] = list(headings)
        for block in page.blocks:
            if block.type in HEADING_TYPES and heading_text(block):
                level = heading_level(block)
                headings = [h for h in headings if h[0] < level] + [(level, heading_text(block))]
    return at_start
