"""Units -> chunks: structure-aware chunking of one `Document`, shared by both frameworks.

Three ways to cut (`ChunkBy`):
- BLOCK: one chunk per unit (a block, or a part of a block too large for a chunk); headings
  do not stand alone, they open the chunk of the block that follows them;
- SECTION: consecutive units under the same heading path, packed up to the chunk size; a new
  heading always starts a new chunk;
- SIZE: units packed up to the chunk size, sections ignored (headings still open chunks
  when they fall at a cut).
In every mode a chart or a chemical structure is a chunk of its own (a heading or caption
just before it may open it), so retrieval returns it as data with its own metadata.
Overlap repeats whole trailing units of the previous chunk (never part of a table row or an
equation), at most `chunk_overlap` long, and never across a section cut in SECTION mode.
Then, in SECTION and SIZE modes, a chunk shorter than `min_chunk_size` (a stray "1", the
last words of a section) joins the previous chunk of its section when the two fit in one
chunk, else the next one of its section, else takes the last units of the previous chunk
(a table, a paragraph) so that it is no longer tiny; a lone heading joins the chunk after
it. A short section with its own heading stays, and charts and chemical structures keep
their chunks. Chunks never exceed the chunk size for this.
Chunks never cross documents; they may cross pages and then carry the page span.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from dsocr_connectors.document import BlockType, Box, Document
from splitters.chunk import Chunk, union_box
from splitters.sizing import resolve_length
from splitters.structure import FURNITURE, Unit, document_units

JOINER = "\n\n"


class ChunkBy(str, Enum):
    """How `chunk_document` cuts a document."""

    BLOCK = "block"
    SECTION = "section"
    SIZE = "size"


def build_chunk(units: list[Unit], source: str, *, overlap: int = 0) -> Chunk:
    """One chunk from consecutive units; the first `overlap` units repeat the previous chunk."""
    boxes: list[tuple[int, Box]] = [pb for u in units for pb in u.boxes]
    by_page: dict[int, list[Box]] = {}
    for page, box in boxes:
        by_page.setdefault(page, []).append(box)
    refs = list(dict.fromkeys(r for u in units for r in u.refs))
    pages = [page for page, _ in refs]
    own = units[overlap:] or units
    first_text = next((u for u in own if not u.is_heading), own[-1])
    metadata: dict[str, Any] = {}
    if any(u.is_oversize for u in units):
        metadata["oversize"] = True
    parts = [u.part for u in units if u.table is not None and u.part]
    if parts:
        metadata["table_part"] = f"{parts[0][0]}/{parts[0][1]}"
    if overlap:
        metadata["overlap_units"] = overlap
    return Chunk(
        text=JOINER.join(u.text for u in units),
        source=source,
        pages=(min(pages), max(pages)),
        page_boxes={p: union_box(b) for p, b in sorted(by_page.items())},
        block_boxes=boxes,
        heading_path=list(first_text.heading_path),
        block_types=list(dict.fromkeys(t for u in units for t in u.types)),
        block_refs=refs,
        tables=[u.table for u in units if u.table is not None],
        metadata=metadata,
    )


def _tail(units: list[Unit], budget: int, room: int, gap: int) -> list[Unit]:
    """The longest run of trailing non-sticky units within `budget` and leaving `room`."""
    tail: list[Unit] = []
    size = 0
    for unit in reversed(units):
        grown = size + unit.length + (gap if tail else 0)
        if unit.is_sticky or grown > budget or grown > room:
            break
        tail.insert(0, unit)
        size = grown
    return tail


def _group(units: list[Unit], by: ChunkBy, size: int, overlap: int, gap: int):
    """Yield (units, number of overlap units) per chunk."""
    current: list[Unit] = []
    carried = 0
    length = 0
    for unit in units:
        if not current:
            current, length = [unit], unit.length
            continue
        only_sticky = all(u.is_sticky for u in current[carried:])
        new_section = unit.is_heading and not only_sticky and by != ChunkBy.SIZE
        too_big = length + gap + unit.length > size
        alone = unit.is_standalone or any(u.is_standalone for u in current[carried:])
        if alone and not (unit.is_standalone and only_sticky):
            too_big = True  # charts and structures are chunks of their own (a caption may lead)
        if by == ChunkBy.BLOCK:
            cut = not only_sticky or too_big
        else:
            cut = new_section or too_big
        if not cut:
            current.append(unit)
            length += gap + unit.length
            continue
        moved: list[Unit] = []  # sticky units left at the end go with what follows them
        moved_length = unit.length
        while (len(current) > carried + 1 and current[-1].is_sticky
               and moved_length + gap + current[-1].length <= size):
            moved_length += gap + current[-1].length
            moved.insert(0, current.pop())
        yield current, carried
        tail = []
        if overlap and not (new_section or moved or unit.is_heading) and by != ChunkBy.BLOCK:
            tail = _tail(current[carried:], overlap, size - unit.length - gap, gap)
        current = tail + moved + [unit]
        carried = len(tail)
        length = sum(u.length for u in current) + gap * (len(current) - 1)
    if current:
        yield current, carried


def _size(units: list[Unit], gap: int) -> int:
    return sum(u.length for u in units) + gap * max(0, len(units) - 1)


def _merge_small(groups: list[tuple[list[Unit], int]], minimum: int, size: int,
                 gap: int) -> list[tuple[list[Unit], int]]:
    """Join each group shorter than `minimum` to a neighbour of its section it fits with."""
    out = list(groups)
    i = 0
    while i < len(out):
        units, carried = out[i]
        own = units[carried:]
        before = out[i - 1] if i > 0 else None
        after = out[i + 1] if i + 1 < len(out) else None
        if (_size(own, gap) >= minimum or any(u.is_standalone for u in units)
                or (own[0].is_heading and not all(u.is_heading for u in own))):
            i += 1  # long enough, data of its own, or a short section of its own
            continue
        if own[0].is_heading:  # headings alone: they open what follows them
            before = None
        elif after is not None and after[0][after[1]].is_heading:
            after = None  # the next chunk is another section
        if before is not None and not any(u.is_standalone for u in before[0]) and \
                _size(before[0] + own, gap) <= size:
            out[i - 1] = (before[0] + own, before[1])
            del out[i]
        elif after is not None and not any(u.is_standalone for u in after[0]) and \
                _size(units + after[0][after[1]:], gap) <= size:
            out[i + 1] = (units + after[0][after[1]:], carried)
            del out[i]
        elif before is not None and (moved := _borrow(before, own, minimum, size, gap)):
            out[i - 1] = (before[0][:len(before[0]) - len(moved)], before[1])
            out[i] = (moved + own, 0)
            i += 1
        else:
            i += 1
    return out


def _borrow(before: tuple[list[Unit], int], own: list[Unit], minimum: int, size: int,
            gap: int) -> list[Unit]:
    """Trailing units of the previous chunk that the short chunk can take (to reach
    `minimum` within `size`), leaving that chunk something besides headings; [] if none."""
    units, carried = before
    moved: list[Unit] = []
    while len(units) - len(moved) - carried > 1:
        last = units[len(units) - len(moved) - 1]
        if last.is_standalone or last.is_heading or _size([last, *moved, *own], gap) > size:
            break
        moved.insert(0, last)
        if _size(moved + own, gap) >= minimum:
            break
    kept = units[carried:len(units) - len(moved)]
    return moved if moved and not all(u.is_heading for u in kept) else []


def chunk_document(
    doc: Document,
    *,
    chunk_size: int = 1000,
    chunk_overlap: int = 0,
    length: Any = None,
    by: ChunkBy | str = ChunkBy.SECTION,
    skip_types: Iterable[BlockType] = FURNITURE,
    open_headings: Iterable[tuple[int, str]] = (),
    min_chunk_size: int | None = None,
    language: str = "en",
) -> list[Chunk]:
    """Cut one document into chunks that respect its structure.

    Args:
        doc: the document (all its pages; chunks never cross documents).
        chunk_size: the largest chunk, in units of `length`; a single table row group,
            equation or sentence larger than this is kept whole (chunk metadata `oversize`).
        chunk_overlap: how much trailing text of a chunk to repeat at the start of the next,
            in whole units (0 for none).
        length: how text is measured: None or "characters", a tokenizer, a path to a
            `tokenizer.json`, or a callable (see `splitters.sizing.resolve_length`).
        by: "section" (default), "block" or "size" (see `ChunkBy`).
        skip_types: block types left out (default: page headers, footers, page numbers).
        open_headings: (level, text) of headings open before `doc` starts, for a page
            chunked on its own (see `splitters.structure.headings_at_page_start`); default
            `doc.metadata["open_headings"]` when present.
        min_chunk_size: chunks shorter than this join a neighbour (SECTION and SIZE modes);
            None: `min(50, chunk_size // 10)`; 0: never.
        language: the language paragraphs are split into sentences by ("en", "de", "zh",
            ...; see `splitters.sentences`).

    Returns:
        The chunks in reading order.

    Raises:
        ValueError: chunk_size < 1, or chunk_overlap negative or not smaller than chunk_size.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ValueError(f"chunk_overlap must be in [0, chunk_size), got {chunk_overlap}")
    measure = resolve_length(length)
    mode = ChunkBy(by)
    units = document_units(doc, chunk_size=chunk_size, length=measure, skip_types=skip_types,
                           open_headings=open_headings or doc.metadata.get("open_headings", ()),
                           language=language)
    gap = measure(JOINER)
    groups = list(_group(units, mode, chunk_size, chunk_overlap, gap))
    minimum = min(50, chunk_size // 10) if min_chunk_size is None else min_chunk_size
    if minimum > 0 and mode != ChunkBy.BLOCK:
        groups = _merge_small(groups, minimum, chunk_size, gap)
    return [build_chunk(group, doc.source, overlap=carried) for group, carried in groups]
