"""The text-layer reader: a born-digital PDF page -> blocks, headings, tables, grid boxes."""

from __future__ import annotations

import pymupdf
import pytest

import loaders
from dsocr_connectors.document import BlockType, PageStatus
from dsocr_connectors.text_layer import (
    TextLayerEngine,
    layer_table_to_table,
    page_from_text_layer,
    to_grid,
)
from loaders.page import LayerTable, LoadedPage, TextLayer, TextSpan

TABLE_ROWS = [["Region", "Q1", "Q2"], ["North", "10", "12"], ["South", "7", "9"]]


def make_report_pdf(path) -> None:
    """One A4 page: title, numbered section headings, paragraphs, a bullet, a ruled table."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 90), "Annual Report", fontsize=24, fontname="hebo")
    page.insert_text((72, 130), "1. Introduction", fontsize=16, fontname="hebo")
    page.insert_textbox(
        pymupdf.Rect(72, 145, 520, 200),
        "This report describes the results of the year. Revenue grew strongly in all "
        "regions and costs stayed flat.",
        fontsize=11, fontname="helv",
    )
    page.insert_text((72, 230), "\u2022 First point of the list", fontsize=11, fontname="helv")
    for r, row in enumerate(TABLE_ROWS):
        for c, text in enumerate(row):
            rect = pymupdf.Rect(72 + c * 150, 280 + r * 24, 72 + (c + 1) * 150, 280 + (r + 1) * 24)
            page.draw_rect(rect, color=(0, 0, 0), width=0.8)
            page.insert_text((rect.x0 + 4, rect.y1 - 7), text, fontsize=11,
                             fontname="hebo" if r == 0 else "helv")
    page.insert_text((72, 420), "2. Outlook", fontsize=16, fontname="hebo")
    page.insert_textbox(pymupdf.Rect(72, 435, 520, 500),
                        "Next year we expect steady growth and new markets in the east.",
                        fontsize=11, fontname="helv")
    page.insert_text((290, 820), "3", fontsize=9, fontname="helv")
    doc.save(path)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> LoadedPage:
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    make_report_pdf(path)
    return next(iter(loaders.iter_pages(path, dpi=72)))


def test_blocks_follow_the_page(report_page):
    page = page_from_text_layer(report_page)
    assert page.engine == "text-layer" and page.status == PageStatus.OK
    kinds = [b.type for b in page.blocks]
    assert kinds == [
        BlockType.TITLE, BlockType.SECTION_HEADING, BlockType.TEXT, BlockType.LIST_ITEM,
        BlockType.TABLE, BlockType.SECTION_HEADING, BlockType.TEXT, BlockType.PAGE_NUMBER,
    ]
    assert [b.index for b in page.blocks] == list(range(len(page.blocks)))
    title, intro = page.blocks[0], page.blocks[1]
    assert (title.content, title.heading_level, title.label) == ("# Annual Report", 1, "title")
    assert (intro.content, intro.heading_level, intro.label) == ("## 1. Introduction", 2, "sub_title")
    assert "costs stayed flat." in page.blocks[2].content  # the two lines joined
    assert page.blocks[3].content == "- First point of the list"


def test_table_cells_and_no_duplicate_text(report_page):
    page = page_from_text_layer(report_page)
    (table_block,) = [b for b in page.blocks if b.table is not None]
    table = table_block.table
    assert (table.num_rows, table.num_cols, table.header_rows) == (3, 3, 1)
    assert table.grid() == TABLE_ROWS
    assert all(c.is_header == (c.row == 0) for c in table.cells)
    assert table_block.content.startswith("<table><thead><tr><th>Region</th>")
    text_outside = " ".join(b.content for b in page.blocks if b.table is None)
    assert "North" not in text_outside and "Region" not in text_outside


def test_boxes_are_on_the_grid(report_page):
    page = page_from_text_layer(report_page)
    for block in page.blocks:
        (box,) = block.boxes
        assert 0 <= box.x1 <= box.x2 <= 999 and 0 <= box.y1 <= box.y2 <= 999
    # the title starts at x = 72 pt of 595 pt: round(72 / 595 * 999) = 121
    assert page.blocks[0].boxes[0].x1 == 121
    x1, _, _, _ = page.blocks[0].boxes[0].to_points(595, 842)
    assert abs(x1 - 72) < 595 / 999


def test_to_grid_clamps():
    assert to_grid((-5, 0, 700, 900), 595, 842).model_dump() == {
        "x1": 0, "y1": 0, "x2": 999, "y2": 999}


def test_spanned_cells_keep_their_spans():
    layer = LayerTable(bbox=(0, 0, 100, 100), header_rows=1,
                       rows=[["Name", "Score", None], ["A", "1", "2"], [None, "3", "4"]])
    table = layer_table_to_table(layer)
    by_pos = {(c.row, c.col): c for c in table.cells}
    assert (by_pos[0, 1].col_span, by_pos[0, 1].row_span) == (2, 1)
    assert (by_pos[1, 0].row_span, by_pos[1, 0].col_span) == (2, 1)
    assert table.grid() == [["Name", "Score", "Score"], ["A", "1", "2"], ["A", "3", "4"]]
    assert 'colspan="2"' in table.html and 'rowspan="2"' in table.html


def test_fallback_status_and_engine_adapter(report_page):
    page = TextLayerEngine().read_page(report_page, status=PageStatus.FALLBACK)
    assert page.status == PageStatus.FALLBACK and page.blocks


def test_missing_text_layer_names_file_and_page():
    with pytest.raises(ValueError, match=r"scan\.pdf, page 4: no PDF text layer"):
        page_from_text_layer(LoadedPage(source="scan.pdf", number=4, width_pt=10, height_pt=10))


def test_bold_body_size_headings_are_sections_and_hyphens_rejoin():
    spans = [
        TextSpan(text="Methods", bbox=(72, 100, 140, 112), size=10, is_bold=True, block=0),
        TextSpan(text="We measured the infor-", bbox=(72, 120, 300, 132), size=10, block=1, line=0),
        TextSpan(text="mation twice, at well-", bbox=(72, 133, 300, 145), size=10, block=1, line=1),
        TextSpan(text="Known sites.", bbox=(72, 146, 300, 158), size=10, block=1, line=2),
    ]
    loaded = LoadedPage(source="x.pdf", number=1, width_pt=612, height_pt=792,
                        text_layer=TextLayer(spans=spans, is_usable=True))
    heading, text = page_from_text_layer(loaded).blocks
    assert (heading.type, heading.heading_level, heading.content) == (
        BlockType.SECTION_HEADING, 2, "## Methods")
    assert text.content == "We measured the information twice, at well- Known sites."
