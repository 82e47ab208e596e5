"""A born-digital PDF page's text layer -> the same `Page` of typed blocks the model gives.

The steps, each in its own module:
- lines with their spacing, then paragraphs (`lines.py`);
- tables: ruled ones found by pymupdf in the loader (`TextLayer.tables`), unruled ones
  from the text's alignment (`tables.py`); their lines leave the running text, so nothing
  appears twice;
- figures: the regions the loader found drawn as pictures (`TextLayer.figures`: raster
  images, charts and diagrams in vector drawing) become `figure` blocks, the text drawn
  inside one, and short labels just outside it (axis ticks), its content, as the model
  writes it; a paragraph
  starting "Figure N" / "Fig. N" right next to a figure is its caption;
- each paragraph typed: header, footer and page number (small print, or a page number,
  in the top or bottom `EDGE_BAND` of the page), code (all monospaced: a fenced block, its
  lines and indentation kept, so `#comment` is never a heading), heading (a heading style
  of the document, `headings.py`, on at most 3 lines), list item (a bullet, written `- `,
  or a number/letter marker), else text;
- reading order from geometry (`order.py`): headers first, then the body by bands and
  columns, then footers and page numbers.

Labels are the model's (`title`, `sub_title`, `text`, `table`, ...); boxes are on the model's
0..999 grid: `round(x / width_pt * 999)`, clamped, so `Box.to_points` gives them back to
within half a grid step.
"""

from __future__ import annotations

import re
import time

from dsocr_connectors.document import GRID, Block, BlockType, Box, Figure, Page, PageStatus
from dsocr_connectors.text_layer.headings import HeadingStyles, heading_styles
from dsocr_connectors.text_layer.lines import (
    BULLET,
    NUMBERED,
    Line,
    Paragraph,
    join_split_lines,
    page_lines,
    paragraphs,
)
from dsocr_connectors.text_layer.order import reading_order, usual_line_height
from dsocr_connectors.text_layer.tables import find_unruled_tables, layer_table_to_table
from loaders.page import FontStats, LayerTable, LoadedPage
from loaders.pdf import read_skipped_tables

ENGINE_NAME = "text-layer"
EDGE_BAND = 0.08  # header/footer band: this share of the page height at top and bottom
MAX_HEADING_CHARS = 200
MAX_HEADING_LINES = 3
MAX_LABEL_CHARS = 40  # text just outside a figure longer than this is running text

PAGE_NUMBER = re.compile(r"^\s*(page\s*)?(\d+|[ivxlc]+)(\s*(/|of)\s*\d+)?\s*$", re.I)
_LETTER = re.compile(r"[^\W\d_]")
_MARKDOWN_START = re.compile(r"^(#+|>)")
FIGURE_CAPTION = re.compile(r"^\s*(figure|fig\.)\s*[\dIVX]+\b", re.I)


def to_grid(bbox: tuple[float, float, float, float], width_pt: float, height_pt: float) -> Box:
    """A box in PDF points (origin top-left) on the model's 0..999 grid."""

    def scale(value: float, extent: float) -> int:
        return min(GRID, max(0, round(value / extent * GRID)))

    x1, y1, x2, y2 = bbox
    return Box(x1=scale(x1, width_pt), y1=scale(y1, height_pt),
               x2=scale(x2, width_pt), y2=scale(y2, height_pt))


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
    read_skipped_tables(loaded)  # a page loaded for the model, falling back to its layer
    where = f"{loaded.source}, page {loaded.number}"
    if loaded.text_layer is None:
        raise ValueError(f"{where}: no PDF text layer")
    if not loaded.width_pt or not loaded.height_pt:
        raise ValueError(f"{where}: page size in points unknown, cannot place text-layer boxes")
    width, height = loaded.width_pt, loaded.height_pt
    layer = loaded.text_layer

    lines = join_split_lines(
        [line for line in page_lines(layer.spans) if not _in_any(line, layer.tables)])
    margin = usual_line_height([line.height for line in lines])  # tick labels sit just outside
    figures = [(bbox, [ln for ln in lines if _labels(ln, bbox, margin)]) for bbox in layer.figures]
    lines = [ln for ln in lines if not any(ln in inside for _, inside in figures)]
    unruled = find_unruled_tables(lines, layer.words)
    taken = set().union(*(indexes for _, indexes in unruled))
    lines = [line for i, line in enumerate(lines) if i not in taken]
    paras = paragraphs(lines)
    fonts = next((f for f in (layer.document_fonts, layer.fonts) if f is not None and f.chars),
                 None)
    styles = heading_styles(fonts or _fonts_of(paras))

    items = [(p.bbox, _block(p, styles, width, height)) for p in paras]
    items += [(t.bbox, _table_block(t, width, height))
              for t in [*layer.tables, *(t for t, _ in unruled)]]
    figure_items = [(bbox, _figure_block(bbox, inside, width, height))
                    for bbox, inside in figures]
    _type_figure_captions(items, figure_items, margin)
    items += figure_items
    edges = [i for i in items if i[1].type in _EDGE_TYPES]
    body = [i for i in items if i[1].type not in _EDGE_TYPES]
    line_height = usual_line_height([line.height for line in lines])
    top = sorted((i for i in edges if i[0][3] <= height / 2), key=lambda i: (i[0][1], i[0][0]))
    bottom = sorted((i for i in edges if i[0][3] > height / 2), key=lambda i: (i[0][1], i[0][0]))
    ordered = [*top, *reading_order(body, lambda i: i[0], line_height), *bottom]
    blocks = [block for _, block in ordered]
    for index, block in enumerate(blocks):
        block.index = index

    flags = []
    if layer.num_removed_chars:
        flags.append(f"text_layer: {layer.num_removed_chars} control or zero-width "
                     "characters left out")
    size = loaded.pixel_size
    return Page(
        number=loaded.number, status=status, label=loaded.label,
        image_width=size[0] if size is not None else None,
        image_height=size[1] if size is not None else None,
        width_pt=width, height_pt=height, rotation=loaded.rotation, engine=ENGINE_NAME,
        timings={"text_layer": time.perf_counter() - started}, flags=flags, blocks=blocks,
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


_EDGE_TYPES = (BlockType.HEADER, BlockType.FOOTER, BlockType.PAGE_NUMBER)


def _block(para: Paragraph, styles: HeadingStyles, width: float, height: float) -> Block:
    box = to_grid(para.bbox, width, height)
    text = para.text

    def block(kind: BlockType, label: str, content: str, level: int | None = None) -> Block:
        return Block(index=0, type=kind, label=label, boxes=[box], content=content,
                     heading_level=level)

    small_print = styles.body_size <= 0 or para.size <= styles.body_size * 1.05
    at_top, at_bottom = box.y2 <= GRID * EDGE_BAND, box.y1 >= GRID * (1 - EDGE_BAND)
    if (at_top or at_bottom) and PAGE_NUMBER.match(text):
        return block(BlockType.PAGE_NUMBER, "page_number", text)
    if at_top and small_print:
        return block(BlockType.HEADER, "header", text)
    if at_bottom and small_print:
        return block(BlockType.FOOTER, "footer", text)
    if para.is_mono:
        return block(BlockType.TEXT, "text", f"```\n{para.code_text()}\n```")
    bullet = BULLET.match(text)
    if bullet:
        return block(BlockType.LIST_ITEM, "text", f"- {bullet.group(2).strip()}")
    level = styles.level(para.size, para.is_bold)
    if level is not None and _reads_as_heading(para, text):
        kind, label = ((BlockType.TITLE, "title") if level == 1
                       else (BlockType.SECTION_HEADING, "sub_title"))
        return block(kind, label, f"{'#' * level} {text}", level)
    if NUMBERED.match(text):
        return block(BlockType.LIST_ITEM, "text", text)
    if _MARKDOWN_START.match(text):
        text = "\\" + text  # text that starts like a heading or a quote is not one
    return block(BlockType.TEXT, "text", text)


def _reads_as_heading(para: Paragraph, text: str) -> bool:
    return (len(para.lines) <= MAX_HEADING_LINES and len(text) <= MAX_HEADING_CHARS
            and bool(_LETTER.search(text)) and not PAGE_NUMBER.match(text))


def _table_block(layer_table: LayerTable, width: float, height: float) -> Block:
    table = layer_table_to_table(layer_table)
    return Block(index=0, type=BlockType.TABLE, label="table",
                 boxes=[to_grid(layer_table.bbox, width, height)], content=table.html,
                 table=table)


def _in_any(line: Line, tables: list[LayerTable]) -> bool:
    return any(_inside(line, t.bbox) for t in tables)


def _inside(line: Line, bbox: tuple[float, float, float, float]) -> bool:
    cx = (line.bbox[0] + line.bbox[2]) / 2
    cy = (line.bbox[1] + line.bbox[3]) / 2
    return bbox[0] <= cx <= bbox[2] and bbox[1] <= cy <= bbox[3]


def _labels(line: Line, bbox: tuple[float, float, float, float], margin: float) -> bool:
    """Text drawn as part of a figure: inside it, or a short label (an axis tick, a legend
    entry) within one line's height of its edge; never the start of its caption."""
    if _inside(line, bbox):
        return True
    x0, y0, x1, y1 = bbox
    grown = (x0 - margin, y0 - margin, x1 + margin, y1 + margin)
    return (len(line.text) <= MAX_LABEL_CHARS and _inside(line, grown)
            and not FIGURE_CAPTION.match(line.text))


def _figure_block(bbox: tuple[float, float, float, float], inside: list[Line], width: float,
                  height: float) -> Block:
    """A figure; the text drawn inside it (labels, a legend) is its content."""
    content = "\n".join(line.text for line in inside)
    return Block(index=0, type=BlockType.FIGURE, label="image",
                 boxes=[to_grid(bbox, width, height)], content=content)


def _type_figure_captions(items: list, figures: list, line_height: float) -> None:
    """A text paragraph starting "Figure N" / "Fig. N" whose box is within a few lines
    above or below a figure becomes that figure's caption (`Figure.caption` too)."""
    near = 3 * max(line_height, 1.0)
    for bbox, block in items:
        if block.type is not BlockType.TEXT or not FIGURE_CAPTION.match(block.content):
            continue
        for f, figure in figures:
            if bbox[1] - f[3] <= near and f[1] - bbox[3] <= near and figure.figure is None:
                block.type, block.label = BlockType.FIGURE_CAPTION, "image_caption"
                figure.figure = Figure(caption=block.content)
                break


def _fonts_of(paras: list[Paragraph]) -> FontStats:
    """Font statistics of the page's own paragraphs (a text layer built without them)."""
    fonts = FontStats()
    for para in paras:
        for line in para.lines:
            key = (round(line.size * 2) / 2, line.is_bold)
            fonts.chars[key] = fonts.chars.get(key, 0) + len(line.text)
        if len(para.lines) == 1:
            key = (round(para.size * 2) / 2, para.is_bold)
            fonts.short_lines[key] = fonts.short_lines.get(key, 0) + 1
    return fonts
