"""Hand-built documents and a stand-in converter for the splitter and connector tests.

The document looks like what the parser makes of a real report: furniture, a title,
numbered section headings with levels, paragraphs, an equation, a figure with its caption,
a large table (two header rows, column and row spans) and a page that failed part way.
"""

from __future__ import annotations

from pathlib import Path

from dsocr_connectors.document import (
    Block,
    BlockType,
    Box,
    Document,
    Equation,
    Figure,
    Page,
    PageStatus,
    Table,
    TableCell,
)

REGIONS = ["Northland", "Southmark", "Eastvale", "Westport", "Midlands", "Zanzibar",
           "Highmoor", "Lowfield", "Riverton", "Lakeside", "Stonebridge", "Fairhaven"]
PRODUCTS = ["Widgets", "Gadgets"]


def revenue_table() -> Table:
    """Header: Region | Product | Revenue (Q1, Q2); one region spans its two product rows."""
    cells = [
        TableCell(row=0, col=0, text="Region", row_span=2, is_header=True),
        TableCell(row=0, col=1, text="Product", row_span=2, is_header=True),
        TableCell(row=0, col=2, text="Revenue", col_span=2, is_header=True),
        TableCell(row=1, col=2, text="Q1", is_header=True),
        TableCell(row=1, col=3, text="Q2", is_header=True),
    ]
    row = 2
    for r, region in enumerate(REGIONS):
        cells.append(TableCell(row=row, col=0, text=region, row_span=2))
        for p, product in enumerate(PRODUCTS):
            cells.append(TableCell(row=row + p, col=1, text=product))
            cells.append(TableCell(row=row + p, col=2, text=f"{100 + 10 * r + p}.5"))
            cells.append(TableCell(row=row + p, col=3, text=f"{200 + 10 * r + p}.25"))
        row += 2
    return Table(num_rows=row, num_cols=4, cells=cells, header_rows=2, html="<table>...</table>")


def block(index: int, kind: BlockType, content: str = "", box=(100, 100, 900, 150),
          **extra) -> Block:
    label = {BlockType.SECTION_HEADING: "sub_title", BlockType.FIGURE: "image"}.get(kind,
                                                                                    kind.value)
    return Block(index=index, type=kind, label=label, content=content,
                 boxes=[Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])], **extra)


INTRO = ("DeepSeek-OCR reads a page image and writes its layout as grounded Markdown. "
         "Each block carries a box on a grid of 999 by 999. "
         "This report measures how well the connectors keep that structure.")


def sample_document(source: str = "report.pdf") -> Document:
    """Three pages: title and sections, a big table on page 1, a failed page 3."""
    page1 = Page(
        number=1, label="i", image_width=1000, image_height=1400, width_pt=612, height_pt=792,
        blocks=[
            block(0, BlockType.HEADER, "ACME Corp confidential", (50, 10, 950, 30)),
            block(1, BlockType.TITLE, "# Annual Report 2024", (100, 40, 900, 80)),
            block(2, BlockType.SECTION_HEADING, "## 1 Introduction", (100, 90, 500, 110),
                  heading_level=2),
            block(3, BlockType.TEXT, INTRO, (100, 120, 900, 200)),
            block(4, BlockType.EQUATION, "\\[E = m c^2\\]", (300, 210, 700, 240),
                  equation=Equation(latex="E = m c^2")),
            block(5, BlockType.FIGURE, "", (200, 250, 800, 400),
                  figure=Figure(caption="Figure 1: Revenue growth")),
            block(6, BlockType.FIGURE_CAPTION, "Figure 1: Revenue growth", (200, 405, 800, 420)),
            block(7, BlockType.SECTION_HEADING, "## 2 Results", (100, 430, 500, 450),
                  heading_level=2),
            block(8, BlockType.TABLE_CAPTION, "Table 1: Quarterly revenue by region",
                  (100, 460, 900, 475)),
            block(9, BlockType.TABLE, "", (100, 480, 900, 980), table=revenue_table()),
        ],
    )
    page2 = Page(
        number=2, label="ii", image_width=1000, image_height=1400, width_pt=612, height_pt=792,
        blocks=[
            block(0, BlockType.TEXT, "Revenue grew in every region but one.", (100, 50, 900, 80)),
            block(1, BlockType.SECTION_HEADING, "### 2.1 Details", (100, 90, 500, 110),
                  heading_level=3),
            block(2, BlockType.LIST_ITEM, "- Widgets sold best in Zanzibar.", (100, 120, 900, 140)),
            block(3, BlockType.LIST_ITEM, "- Gadgets lagged in Lowfield.", (100, 150, 900, 170)),
            block(4, BlockType.PAGE_NUMBER, "2", (480, 970, 520, 990)),
        ],
    )
    page3 = Page(
        number=3, status=PageStatus.FAILED, reason="repetition loop", flags=["loop"],
        image_width=1000, image_height=1400,
        blocks=[block(0, BlockType.TEXT, "Outlook for 2025 remains", (100, 50, 900, 80))],
    )
    return Document(source=source, pages=[page1, page2, page3])


class StubConverter:
    """Stands in for `dsocr_connectors.pipeline.Converter`: hand-built documents, no model."""

    def __init__(self) -> None:
        self.converted: list[str] = []

    def convert(self, source, *, name=None) -> Document:
        label = name or str(source)
        self.converted.append(label)
        return sample_document(label)

    def iter_documents(self, sources):
        for source in sources:
            yield self.convert(source)

    def iter_pages(self, source):
        yield from self.convert(source).pages


def sample_path(tmp_path: Path) -> Path:
    """A file that exists (the stub does not read it; the connectors check it exists)."""
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 stand-in")
    return path


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BORN_DIGITAL = EXAMPLES / "born_digital.pdf"
CHART_BOX = Box(x1=158, y1=363, x2=662, y2=565)  # the bar chart on page 2, 0..999 grid


class ReplayConverter:
    """Converts once with the real (text-layer) Converter, then hands out copies."""

    def __init__(self, document: Document | None = None) -> None:
        from dsocr_connectors.pipeline import Converter

        self.document = document or Converter().convert(BORN_DIGITAL)
        self.converted: list[str] = []

    def convert(self, source, *, name=None) -> Document:
        self.converted.append(name or str(source))
        return self.document.model_copy(deep=True, update={"source": name or str(source)})
