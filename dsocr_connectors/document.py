"""The document model: Document -> Page -> Block, with typed payloads.

This is the one data structure every layer above the model speaks. It knows nothing about
how pages were rendered or recognised; loaders fill the page geometry, the engine fills the
run facts (mode, prompt, tokens, timings), the parser fills the blocks.

Coordinate contract (see `Box`): boxes are kept exactly as the model emitted them, integers
on a 0..999 grid relative to the page image, origin top-left, x to the right, y down. They are
exposed as normalised 0..1 values (divided by 999, as the released DeepSeek-OCR code does, so
999 is the right/bottom edge), as image pixels (normalised x image size) and as PDF points
(normalised x page size in points, origin top-left like the image; the PDF's own origin is
bottom-left, flip y with `page_height_pt - y` if you need it). Values the model emitted out
of range are clamped into 0..999 by the parser and the block is flagged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

GRID = 999  # the released code divides model coordinates by 999


class PageStatus(str, Enum):
    """What became of an input page. Every input page yields exactly one `Page`."""

    OK = "ok"  # the model read it and the output parsed cleanly
    RECOVERED = "recovered"  # a first run failed (loop, length) and a rerun succeeded
    FALLBACK = "fallback"  # the content comes from the PDF text layer, not the model
    FAILED = "failed"  # no usable content; `reason` and `errors` say why, partial content kept


class BlockType(str, Enum):
    """The documented block taxonomy. `Block.label` keeps the model's label verbatim."""

    TITLE = "title"
    SECTION_HEADING = "section_heading"
    TEXT = "text"
    LIST_ITEM = "list_item"
    TABLE = "table"
    TABLE_CAPTION = "table_caption"
    TABLE_FOOTNOTE = "table_footnote"
    FIGURE = "figure"
    FIGURE_CAPTION = "figure_caption"
    FIGURE_FOOTNOTE = "figure_footnote"
    EQUATION = "equation"
    HEADER = "header"
    FOOTER = "footer"
    PAGE_NUMBER = "page_number"
    LINE = "line"  # one recognised line from `<|grounding|>OCR this image.`
    UNKNOWN = "unknown"  # a label outside the taxonomy; the label itself is kept


class Box(BaseModel):
    """A layout box on the model's 0..999 grid (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: int
    y1: int
    x2: int
    y2: int

    def normalized(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) in 0..1 of the page width and height."""
        return (self.x1 / GRID, self.y1 / GRID, self.x2 / GRID, self.y2 / GRID)

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box in pixels of an image `width` x `height` (the page image the model saw)."""
        nx1, ny1, nx2, ny2 = self.normalized()
        return (nx1 * width, ny1 * height, nx2 * width, ny2 * height)

    def to_points(self, width_pt: float, height_pt: float) -> tuple[float, float, float, float]:
        """The box in PDF points of a page `width_pt` x `height_pt`, origin top-left."""
        return self.to_pixels(width_pt, height_pt)  # same scaling, other unit

    @property
    def area(self) -> int:
        return max(0, self.x2 - self.x1) * max(0, self.y2 - self.y1)


class TableCell(BaseModel):
    """One cell as written in the HTML: its top-left grid position and its spans."""

    row: int
    col: int
    text: str
    row_span: int = 1
    col_span: int = 1
    is_header: bool = False
    # Filled by the financial reading (dsocr_connectors.deep.annotate_table); text stays as is.
    value: float | None = None
    value_kind: str | None = None  # number, percent, nil, empty, text
    unit: str | None = None


class Table(BaseModel):
    """A table with a grid of cells; spans are kept, not flattened."""

    num_rows: int = 0
    num_cols: int = 0
    cells: list[TableCell] = Field(default_factory=list)
    header_rows: int = 0
    html: str = ""  # the HTML as the model emitted it (repaired HTML comes from to_html)
    scale: float | None = None  # the multiplier a caption or header announced ("in millions")
    currency: str | None = None
    flags: list[str] = Field(default_factory=list)
    outside_text: list[str] = Field(default_factory=list)  # text in the HTML outside any cell

    def grid(self, fill_spans: bool = True) -> list[list[str]]:
        """Rows of cell texts; a spanned cell's text repeats over its span if `fill_spans`."""
        rows = [["" for _ in range(self.num_cols)] for _ in range(self.num_rows)]
        for cell in self.cells:
            for r in range(cell.row, min(cell.row + cell.row_span, self.num_rows)):
                for c in range(cell.col, min(cell.col + cell.col_span, self.num_cols)):
                    if fill_spans or (r == cell.row and c == cell.col):
                        rows[r][c] = cell.text
        return rows

    def to_markdown(self) -> str:
        from dsocr_connectors.export.tables import table_to_markdown

        return table_to_markdown(self)

    def to_html(self) -> str:
        from dsocr_connectors.export.tables import table_to_html

        return table_to_html(self)

    def to_csv(self) -> str:
        from dsocr_connectors.export.tables import table_to_csv

        return table_to_csv(self)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame; header rows become the (possibly multi-level) columns."""
        from dsocr_connectors.export.tables import table_to_dataframe

        return table_to_dataframe(self)


class Equation(BaseModel):
    """A formula: `latex` without its `\\[ \\]` delimiters and without its number."""

    latex: str
    display: bool = True
    number: str | None = None  # "3" for a trailing `\quad (3)` or `\tag{3}`; None when unnumbered


class Figure(BaseModel):
    crop_path: str | None = None  # where a crop of the figure was saved, if it was
    caption: str | None = None
    kind: str | None = None  # what the region router took it for: chart, chemistry, ...
    description: str | None = None  # prose from a region re-read that held no data


class ChartSeries(BaseModel):
    name: str
    values: list[float | None] = Field(default_factory=list)
    raw_values: list[str] = Field(default_factory=list)  # the strings the values came from


class ChartData(BaseModel):
    """Data read out of a chart (`Parse the figure.`)."""

    chart_type: str | None = None
    title: str | None = None
    x_title: str | None = None
    y_title: str | None = None
    units: str | None = None
    categories: list[str] = Field(default_factory=list)
    series: list[ChartSeries] = Field(default_factory=list)
    source_text: str = ""  # the raw model output this was parsed from
    flags: list[str] = Field(default_factory=list)


class Chemistry(BaseModel):
    """A chemical structure as SMILES; `is_valid` is None when no validator was available."""

    smiles: str
    canonical_smiles: str | None = None
    inchikey: str | None = None
    is_valid: bool | None = None
    flags: list[str] = Field(default_factory=list)


class GeometrySegment(BaseModel):
    start: tuple[float, float]
    end: tuple[float, float]
    style: str = "--"  # the line type as emitted ("--" solid, others dashed)


class Geometry(BaseModel):
    """A plane-geometry figure read by `Parse the figure.` (the `{'Line': ...}` output)."""

    segments: list[GeometrySegment] = Field(default_factory=list)
    points: dict[str, tuple[float, float]] = Field(default_factory=dict)
    circles: list[tuple[tuple[float, float], float]] = Field(default_factory=list)  # centre, r
    flags: list[str] = Field(default_factory=list)


class Repair(BaseModel):
    """One cut or repair the parser made to a block, so nothing is silently gone or added.

    `Block.content` always keeps the model's text in full; a repair says what the exports
    leave out or add. Kinds (docs/parser.md):
    - `loop_cut`: `content[offset:]` (`length` characters) is `copies` more copies of `unit`,
      which `content[:offset]` holds once; exports write `content[:offset] + text` (`text`
      closes the math, braces and HTML tags left open at the cut).
    - `rows_cut` / `cells_cut`: table rows from index `offset` on (`length` rows), or cells
      of row `row` from cell `offset` on, repeat a unit of rows or cells `copies` more times.
    - `blocks_cut`: the `length` blocks after this one repeat it (flag `repeated_block`).
    - `span_capped`: `length` cell spans were larger than the table and were capped.
    - `table_dropped`: the table holds only markup tokens (`&lt;fcel&gt;`...); `text` says why.
    - `coordinates_from_text` / `label_from_text`: tag parts that lost their tag (`<|det|>`,
      `<|ref|>`) were read as the box (`text` = the payload) or the label of a new block.
    - `coordinates_loop`: the det held `length` characters of looping coordinates (tag text,
      in `Page.raw_output`), not content.
    """

    kind: str
    offset: int | None = None  # characters into `content`; or the first row / cell index
    length: int | None = None  # characters, rows, cells or blocks concerned, from `offset`
    row: int | None = None  # the table row (cells_cut)
    unit: str | None = None  # one copy of what repeats
    copies: float | None = None  # how many copies of `unit` were cut (a last one may be partial)
    text: str | None = None  # text added by the export (closers) or read as a tag part


class Provenance(BaseModel):
    """How a block's payload was obtained when it came from a second, region-level pass."""

    prompt: str
    mode: str
    crop_box: Box
    engine: str | None = None
    raw_output: str = ""
    finish_reason: str | None = None


class BlockRef(BaseModel):
    """Where a block is: its page number (1-based) and its index on that page."""

    page: int
    block: int


class WordBox(BaseModel):
    """A word of the PDF text layer: its exact characters and its box in PDF points on the
    displayed page, origin top-left (the PDF's own y runs up: flip with height - y)."""

    text: str
    bbox: tuple[float, float, float, float]


class TextCheck(BaseModel):
    """How a model-read block's text compares with the PDF text layer inside its box.

    Characters are counted without spaces and without markup (Markdown marks, HTML tags,
    LaTeX, which is never compared). `status`:
    - "confirmed": the layer agrees with every character compared;
    - "corrected": the layer agrees except for small differences (an OCR confusion such as
      "rn" read as "m", a dropped accent), and the layer's exact characters replaced the
      model's there (`num_corrected` of them);
    - "model_only": no text-layer words in the box (or an equation or figure, which are
      not compared); the text is the model's alone;
    - "contradicted": the layer disagrees badly: the model wrote text the layer does not
      have there (`unmatched_text`: hallucinated?) or left out text it has (`missing_text`:
      skipped?), or the two barely agree. The model's text is kept; the block is flagged.
    """

    status: str
    num_chars: int = 0  # the model's characters compared
    num_layer: int = 0  # the layer's characters in the box (a formula's stretch left out)
    num_confirmed: int = 0  # of them, the layer has the same
    num_corrected: int = 0  # layer characters written in place of the model's
    num_unmatched: int = 0  # model characters without support in the layer (kept)
    num_missing: int = 0  # layer characters the model's text lacks
    agreement: float | None = None  # num_confirmed / the larger of model and layer characters
    reason: str | None = None
    unmatched_text: list[str] = Field(default_factory=list)
    missing_text: list[str] = Field(default_factory=list)
    corrections: list[tuple[str, str]] = Field(default_factory=list)  # (model's, layer's) words
    words: list[WordBox] = Field(default_factory=list)  # for confirmed and corrected blocks


class PageTextCheck(BaseModel):
    """The reconciliation of a model-read page with its PDF text layer, in sum.

    `status` is "checked", or "not_checked" with the `reason` (no text layer, or one not
    usable and why). Counts add up the blocks' `TextCheck`s; `num_outside` counts text-layer
    characters in no block's box (`outside_text`: whole lines the model did not read?).
    """

    status: str
    reason: str | None = None
    num_blocks: dict[str, int] = Field(default_factory=dict)  # blocks per TextCheck status
    num_chars: int = 0
    num_confirmed: int = 0
    num_corrected: int = 0
    num_unmatched: int = 0
    num_missing: int = 0
    num_outside: int = 0
    outside_text: list[str] = Field(default_factory=list)


class Block(BaseModel):
    """One layout block in reading order."""

    index: int
    type: BlockType
    label: str  # exactly as emitted by the model ("" for text outside any block)
    boxes: list[Box] = Field(default_factory=list)
    content: str = ""  # Markdown
    heading_level: int | None = None
    table: Table | None = None
    equation: Equation | None = None
    figure: Figure | None = None
    chart: ChartData | None = None
    chemistry: Chemistry | None = None
    geometry: Geometry | None = None
    provenance: Provenance | None = None
    flags: list[str] = Field(default_factory=list)
    repairs: list[Repair] = Field(default_factory=list)  # cuts and repairs, see `Repair`
    # A table continued across a page break (`dsocr_connectors.deep.link_continued_tables`):
    # the part it continues (on the previous page) and the part that continues it.
    continues: BlockRef | None = None
    continued_by: BlockRef | None = None
    text_check: TextCheck | None = None  # model-read blocks checked against the text layer


class PageError(BaseModel):
    stage: str  # load, preprocess, engine, parse, recovery, ...
    message: str
    type: str | None = None  # exception class name


class RecoveryStep(BaseModel):
    """One recovery action taken on a page, in order."""

    action: str  # "rerun", "text_layer", "give_up"
    reason: str
    mode: str | None = None
    finish_reason: str | None = None


class Page(BaseModel):
    """One input page and everything known about how it was read."""

    number: int  # 1-based page number in its source
    status: PageStatus = PageStatus.OK
    reason: str | None = None
    label: str | None = None  # the PDF's page label when it has one
    image_width: int | None = None  # pixels of the page image the model saw
    image_height: int | None = None
    width_pt: float | None = None  # PDF page size in points, when the page came from a PDF
    height_pt: float | None = None
    rotation: int = 0
    engine: str | None = None
    mode: str | None = None
    prompt: str | None = None
    raw_output: str | None = None
    finish_reason: str | None = None
    num_vision_tokens: int | None = None
    num_output_tokens: int | None = None
    compression_ratio: float | None = None  # output tokens per vision token
    timings: dict[str, float] = Field(default_factory=dict)
    errors: list[PageError] = Field(default_factory=list)
    recovery: list[RecoveryStep] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    blocks: list[Block] = Field(default_factory=list)
    # A model-read page of a PDF with a text layer: how far the two agree (0..1), and how.
    text_agreement: float | None = None
    text_check: PageTextCheck | None = None

    def to_markdown(self, **options: Any) -> str:
        from dsocr_connectors.export.markdown import page_to_markdown

        return page_to_markdown(self, **options)

    def tables(self) -> Iterator[Block]:
        return (b for b in self.blocks if b.table is not None)


class Document(BaseModel):
    """A source file (or byte stream) and its pages, one `Page` per input page."""

    source: str
    pages: list[Page] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def num_pages(self) -> int:
        return len(self.pages)

    def to_markdown(self, **options: Any) -> str:
        from dsocr_connectors.export.markdown import document_to_markdown

        return document_to_markdown(self, **options)

    def to_html(self, **options: Any) -> str:
        from dsocr_connectors.export.html import document_to_html

        return document_to_html(self, **options)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Document:
        return cls.model_validate_json(text)

    def tables(self) -> Iterator[tuple[Page, Block]]:
        for page in self.pages:
            for block in page.tables():
                yield page, block


def json_schema() -> str:
    """The JSON Schema of `Document`, as `dsocr schema` prints it."""
    return json.dumps(Document.model_json_schema(), indent=2)
