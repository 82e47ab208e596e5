"""Born-digital pages without a model: the PDF text layer -> the same `Page` the model gives.

pymupdf already knows the text, fonts and tables of a born-digital PDF page; this module
turns that into blocks of the document model so a text-layer page and a model-read page look
alike downstream (same block types, same labels as the model emits, same 0..999 boxes):

- spans are grouped by pymupdf block and line; a block is one paragraph;
- headings: a short block set larger than the page's body size (the font size carrying the
  most characters) or wholly bold; the largest heading size is level 1 (`title`) when it is
  at least 1.3x the body size, the next sizes levels 2..4 (`sub_title`), written as `#`
  Markdown headings like the model does;
- list items: blocks starting with a bullet or a number/letter marker;
- header, footer and page number: small-print blocks in the top or bottom 5% of the page;
- tables: `TextLayer.tables` (pymupdf `find_tables`) become `Table`s with spans kept; the
  spans inside a table's box are removed from the text so nothing appears twice.

Boxes go from PDF points (origin top-left) to the model's grid: `round(x / width_pt * 999)`
and `round(y / height_pt * 999)`, clamped into 0..999, so `Box.to_points` gives them back to
within half a grid step. This module knows nothing of engines or the pipeline.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass

from dsocr_connectors.document import (
    GRID,
    Block,
    BlockType,
    Box,
    Page,
    PageStatus,
    Table,
    TableCell,
)
from loaders.page import LayerTable, LoadedPage, TextSpan

ENGINE_NAME = "text-layer"
EDGE_BAND = 0.05  # header/footer band: this fraction of the page height at top and bottom
HEADING_SIZE_RATIO = 1.15  # a block this much larger than the body size is a heading
TITLE_SIZE_RATIO = 1.3  # the largest heading is a title (level 1) only from this size on
MAX_HEADING_CHARS = 200
MAX_HEADING_LEVEL = 4

_BULLET = re.compile(r"^\s*([\u2022\u25e6\u25aa\u25cf\u2023\u2043\u00b7*\-\u2013])\s+(.*)$", re.S)
_NUMBERED = re.compile(r"^\s*(\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)])\s+(.*)$", re.S)
_PAGE_NUMBER = re.compile(r"^\s*(page\s*)?\d+(\s*(/|of)\s*\d+)?\s*$", re.I)


@dataclass
class _TextBlock:
    """Spans of one pymupdf block, in reading order."""

    lines: list[list[TextSpan]]

    @property
    def spans(self) -> list[TextSpan]:
        return [s for line in self.lines for s in line]

    @property
    def text(self) -> str:
        """Lines joined by spaces; a word hyphenated at a line end is joined back."""
        out = ""
        for line in self.lines:
            part = "".join(s.text for s in line).strip()
            if not part:
                continue
            if len(out) > 1 and out.endswith("-") and out[-2].isalpha() and part[0].islower():
                out = out[:-1] + part
            else:
                out = f"{out} {part}" if out else part
        return out

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        boxes = [s.bbox for s in self.spans]
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )

    @property
    def size(self) -> float:
        """The font size carrying most of the block's characters."""
        weights: Counter[float] = Counter()
        for s in self.spans:
            weights[round(s.size * 2) / 2] += len(s.text.strip())
        return weights.most_common(1)[0][0] if weights else 0.0

    @property
    def is_bold(self) -> bool:
        spans = [s for s in self.spans if s.text.strip()]
        return bool(spans) and all(s.is_bold for s in spans)


def to_grid(
    bbox: tuple[float, float, float, float], width_pt: float, height_pt: float
) -> Box:
    """A box in PDF points (origin top-left) on the model's 0..999 grid."""

    def scale(value: float, extent: float) -> int:
        return min(GRID, max(0, round(value / extent * GRID)))

    x1, y1, x2, y2 = bbox
    return Box(
        x1=scale(x1, width_pt), y1=scale(y1, height_pt),
        x2=scale(x2, width_pt), y2=scale(y2, height_pt),
    )


def has_text(loaded: LoadedPage) -> bool:
    """Whether the page's text layer has any text or table at all (usable or not)."""
    layer = loaded.text_layer
    return layer is not None and (any(s.text.strip() for s in layer.spans) or bool(layer.tables))


def page_from_text_layer(loaded: LoadedPage, *, status: PageStatus = PageStatus.OK) -> Page:
    """Build a `Page` from a PDF page's own text layer, with no model.

    Args:
        loaded: a loaded PDF page; it needs `text_layer` and its size in points.
        status: `PageStatus.OK` when the text layer is the chosen reader, `FALLBACK` when it
            stands in for a failed model run.

    Returns:
        The page with blocks in reading order, engine "text-layer".

    Raises:
        ValueError: the page has no text layer or no size in points (names file and page).
    """
    started = time.perf_counter()
    where = f"{loaded.source}, page {loaded.number}"
    if loaded.text_layer is None:
        raise ValueError(f"{where}: no PDF text layer")
    if not loaded.width_pt or not loaded.height_pt:
        raise ValueError(f"{where}: page size in points unknown, cannot place text-layer boxes")
    width, height = loaded.width_pt, loaded.height_pt
    layer = loaded.text_layer

    tables = sorted(layer.tables, key=lambda t: (t.bbox[1], t.bbox[0]))
    spans = [s for s in layer.spans if s.text.strip() and not _inside_any(s, tables)]
    text_blocks = _group(spans)
    body_size = _body_size(text_blocks)
    heading_levels = _heading_levels(text_blocks, body_size)

    items: list[tuple[float, Block]] = []
    for tb in text_blocks:
        items.append((tb.bbox[1], _text_block(tb, body_size, heading_levels, width, height)))
    blocks = _merge_tables(items, [(t.bbox[1], _table_block(t, width, height)) for t in tables])
    for index, block in enumerate(blocks):
        block.index = index

    image = loaded.image
    return Page(
        number=loaded.number,
        status=status,
        label=loaded.label,
        image_width=image.width if image is not None else None,
        image_height=image.height if image is not None else None,
        width_pt=width,
        height_pt=height,
        rotation=loaded.rotation,
        engine=ENGINE_NAME,
        timings={"text_layer": time.perf_counter() - started},
        blocks=blocks,
    )


class TextLayerEngine:
    """The `text-layer` engine: reads pages from the PDF text layer instead of the image.

    It does not take `PageRequest`s (those carry only an image); the pipeline gives it the
    whole `LoadedPage`. Selecting it (`Converter(engine="text-layer")`) means: no model.
    """

    name = ENGINE_NAME

    def read_page(self, loaded: LoadedPage, *, status: PageStatus = PageStatus.OK) -> Page:
        """See `page_from_text_layer`."""
        return page_from_text_layer(loaded, status=status)


def _inside_any(span: TextSpan, tables: list[LayerTable]) -> bool:
    cx = (span.bbox[0] + span.bbox[2]) / 2
    cy = (span.bbox[1] + span.bbox[3]) / 2
    return any(t.bbox[0] <= cx <= t.bbox[2] and t.bbox[1] <= cy <= t.bbox[3] for t in tables)


def _group(spans: list[TextSpan]) -> list[_TextBlock]:
    """Spans -> blocks of lines, keeping pymupdf's block order (its reading order)."""
    blocks: dict[int, dict[int, list[TextSpan]]] = {}
    for span in spans:
        blocks.setdefault(span.block, {}).setdefault(span.line, []).append(span)
    return [_TextBlock(lines=list(lines.values())) for lines in blocks.values()]


def _body_size(blocks: list[_TextBlock]) -> float:
    weights: Counter[float] = Counter()
    for block in blocks:
        for s in block.spans:
            weights[round(s.size * 2) / 2] += len(s.text.strip())
    return weights.most_common(1)[0][0] if weights else 0.0


def _is_heading(block: _TextBlock, body_size: float) -> bool:
    text = block.text
    if not text or len(text) > MAX_HEADING_CHARS or len(block.lines) > 3:
        return False
    if _BULLET.match(text) or _PAGE_NUMBER.match(text):
        return False
    larger = body_size > 0 and block.size >= body_size * HEADING_SIZE_RATIO
    return larger or (block.is_bold and block.size >= body_size)


def _heading_levels(blocks: list[_TextBlock], body_size: float) -> dict[float, int]:
    """Heading font size -> level: the largest size is 1, the next 2, ... up to 4.

    Level 1 (a title) needs a size of at least `TITLE_SIZE_RATIO` x the body size; a page
    whose headings are all smaller starts at level 2.
    """
    sizes = sorted({b.size for b in blocks if _is_heading(b, body_size)}, reverse=True)
    first = 1 if sizes and sizes[0] >= body_size * TITLE_SIZE_RATIO else 2
    return {size: min(first + i, MAX_HEADING_LEVEL) for i, size in enumerate(sizes)}


def _text_block(
    tb: _TextBlock, body_size: float, levels: dict[float, int], width: float, height: float
) -> Block:
    text = tb.text
    box = to_grid(tb.bbox, width, height)
    small_print = tb.size <= body_size
    if small_print and box.y2 <= GRID * EDGE_BAND:
        return Block(index=0, type=BlockType.HEADER, label="header", boxes=[box], content=text)
    if small_print and box.y1 >= GRID * (1 - EDGE_BAND):
        if _PAGE_NUMBER.match(text):
            return Block(
                index=0, type=BlockType.PAGE_NUMBER, label="page_number", boxes=[box], content=text
            )
        return Block(index=0, type=BlockType.FOOTER, label="footer", boxes=[box], content=text)
    if _is_heading(tb, body_size):
        level = levels[tb.size]
        kind, label = (
            (BlockType.TITLE, "title") if level == 1 else (BlockType.SECTION_HEADING, "sub_title")
        )
        return Block(
            index=0, type=kind, label=label, boxes=[box],
            content=f"{'#' * level} {text}", heading_level=level,
        )
    bullet = _BULLET.match(text)
    if bullet:
        return Block(
            index=0, type=BlockType.LIST_ITEM, label="text", boxes=[box],
            content=f"- {bullet.group(2).strip()}",
        )
    if _NUMBERED.match(text):
        return Block(index=0, type=BlockType.LIST_ITEM, label="text", boxes=[box], content=text)
    return Block(index=0, type=BlockType.TEXT, label="text", boxes=[box], content=text)


def _merge_tables(
    texts: list[tuple[float, Block]], tables: list[tuple[float, Block]]
) -> list[Block]:
    """Put each table before the first text block that starts below the table's top."""
    out: list[Block] = []
    pending = list(tables)
    for top, block in texts:
        while pending and pending[0][0] <= top:
            out.append(pending.pop(0)[1])
        out.append(block)
    out.extend(b for _, b in pending)
    return out


def layer_table_to_table(layer_table: LayerTable) -> Table:
    """A pymupdf table (None marks a cell covered by a span) -> `Table` with spans.

    A cell spans right over the None cells after it in its row, then down over the rows
    whose cells under it are all None. A None that no cell covers becomes an empty cell.
    """
    rows = [list(r) for r in layer_table.rows]
    num_rows = len(rows)
    num_cols = max((len(r) for r in rows), default=0)
    for r in rows:
        r.extend([""] * (num_cols - len(r)))
    covered = [[False] * num_cols for _ in range(num_rows)]
    cells: list[TableCell] = []
    for r in range(num_rows):
        for c in range(num_cols):
            if covered[r][c]:
                continue
            value = rows[r][c]
            if value is None:  # a None no span reached: an empty cell
                value = ""
                col_span = row_span = 1
            else:
                col_span = 1
                while c + col_span < num_cols and rows[r][c + col_span] is None and not covered[r][c + col_span]:
                    col_span += 1
                row_span = 1
                while r + row_span < num_rows and all(
                    rows[r + row_span][cc] is None and not covered[r + row_span][cc]
                    for cc in range(c, c + col_span)
                ):
                    row_span += 1
            for rr in range(r, r + row_span):
                for cc in range(c, c + col_span):
                    covered[rr][cc] = True
            cells.append(
                TableCell(
                    row=r, col=c, text=" ".join(str(value).split()),
                    row_span=row_span, col_span=col_span,
                    is_header=r < layer_table.header_rows,
                )
            )
    table = Table(
        num_rows=num_rows, num_cols=num_cols, cells=cells, header_rows=layer_table.header_rows
    )
    table.html = table.to_html()
    return table



def _table_block(layer_table: LayerTable, width: float, height: float) -> Block:
    table = layer_table_to_table(layer_table)
    return Block(
        index=0, type=BlockType.TABLE, label="table",
        boxes=[to_grid(layer_table.bbox, width, height)], content=table.html, table=table,
    )
