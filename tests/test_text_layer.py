"""The text-layer reader: a born-digital PDF page -> blocks, headings, tables, grid boxes,
in reading order, every word kept (on PDFs made like TeX, office suites, invoice generators)."""

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
from tests import layer_outputs, layer_samples

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


# -- born-digital PDFs made like TeX, office suites and invoice generators ------------------


@pytest.fixture(scope="module")
def samples():
    """Each sample: (the sample, its loaded pages, the text-layer pages, their Markdown)."""
    out = {}
    for make in layer_samples.ALL_SAMPLES:
        sample = make()
        loaded = list(loaders.iter_pages(sample.data, dpi=18))
        pages = [page_from_text_layer(p) for p in loaded]
        out[sample.name] = (sample, loaded, pages, [p.to_markdown() for p in pages])
    return out


@pytest.mark.parametrize("name", [make.__name__ for make in layer_samples.ALL_SAMPLES])
def test_the_layers_words_survive_as_words(samples, name):
    sample, _, _, markdown = samples[name]
    for words, md in zip(layer_outputs.layer_words(sample.data), markdown):
        assert layer_outputs.word_recall(words, md) >= 0.95, md


def test_tex_spacing_ligatures_and_loose_lines(samples):
    _, _, pages, markdown = samples["tex_paper"]
    assert "Dynamic languages such as JavaScript are more difficult to compile efficiently" \
        in markdown[0]
    assert not any("\ufb00" <= c <= "\ufb06" for c in "".join(markdown))  # ligatures expanded
    assert "Section 2 reviews related work" in markdown[0]  # a line set glyph by glyph
    last = pages[1].blocks[-2]  # a loosely justified line mupdf splits word by word
    assert last.content.endswith("in the same way; the raw figures are in the supplementary "
                                 "material.")


@pytest.mark.parametrize("name", ["tex_paper", "newsletter", "invoice", "report",
                                  "three_columns"])
def test_reading_order_follows_columns_not_the_content_stream(samples, name):
    sample, _, _, markdown = samples[name]
    for elements, md in zip(sample.pages, markdown):
        assert layer_outputs.in_order(elements, md) == 1.0, md


def test_two_columns_read_left_then_right(samples):
    _, _, _, markdown = samples["newsletter"]  # the right column comes first in the stream
    text = markdown[0]
    assert text.index("Bridge plans") < text.index("one in every offer") < text.index(
        "Library reopens")


def test_invoice_line_items_keep_their_rows(samples):
    _, _, pages, markdown = samples["invoice"]
    (block,) = [b for b in pages[0].blocks if b.table is not None]
    grid = block.table.grid()
    assert block.table.header_rows == 1
    assert grid[0] == ["Description", "Qty", "Unit price", "Amount"]
    for item in layer_samples.INVOICE_ITEMS:
        assert list(item) in grid
    assert grid[-1] == ["", "", "Total due EUR", "1,695.00"]
    kinds = [b.type for b in pages[0].blocks]
    assert kinds[-1] == BlockType.FOOTER  # drawn first, read last
    assert markdown[0].startswith("## Northwind Supplies Ltd.")


def test_rowspan_header_stays_in_the_header(samples):
    _, _, pages, _ = samples["statistics"]
    (block,) = [b for b in pages[0].blocks if b.table is not None]
    table = block.table
    assert (table.num_rows, table.num_cols, table.header_rows) == (26, 4, 2)
    by_pos = {(c.row, c.col): c for c in table.cells}
    assert (by_pos[0, 0].text, by_pos[0, 0].row_span) == ("Region", 2)
    assert (by_pos[0, 1].text, by_pos[0, 1].col_span) == ("Population", 2)
    body = table.grid()[2:]
    assert [row[0] for row in body] == layer_samples.REGIONS  # one region per row
    assert not any(c in ("Region", "Population", "Change %") for row in body for c in row)


def test_report_furniture_headings_lists_and_code(samples):
    _, _, pages, markdown = samples["report"]
    for number, page in enumerate(pages, start=1):
        assert page.blocks[0].type == BlockType.HEADER
        assert (page.blocks[-1].type, page.blocks[-1].content) == (
            BlockType.PAGE_NUMBER, f"Page {number} of 3")
    levels = [[(b.heading_level, b.content) for b in p.blocks if b.heading_level] for p in pages]
    assert levels == [
        [(1, "# Annual Report 2024"), (2, "## 1. Overview")],
        [(2, "## 2. Operations"), (3, "### 2.1 Build system")],  # no title: still level 2
        [(2, "## 3. Outlook")],
    ]
    items = [b.content for b in pages[0].blocks if b.type == BlockType.LIST_ITEM]
    assert items == ["- Revenue grew in all regions", "- Two sites run on renewable power",
                     "- Customer numbers passed twelve thousand", "1. Finish the new plant",
                     "2. Open the eastern office"]
    (code,) = [b for b in pages[1].blocks if b.content.startswith("```")]
    assert code.content == ("```\n#This file configures the nightly build\n"
                            "# Run it with: make nightly\ndef main():\n"
                            "    build(target=\"release\") # no tests here\n```")
    assert "\n# Run" not in markdown[1].replace(code.content, "")


def test_control_characters_are_left_out_and_said(tmp_path):
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Totalx amounty due within ten weeks", fontname="helv")
    xref = page.get_fonts()[0][0]
    doc.xref_set_key(xref, "Encoding", "<< /Type /Encoding /BaseEncoding /WinAnsiEncoding "
                     "/Differences [120 /uni0001 121 /uni0008] >>")
    [loaded] = loaders.iter_pages(doc.tobytes(), dpi=18)
    page = page_from_text_layer(loaded)
    assert page.blocks[0].content == "Total amount due within ten weeks"
    assert page.flags == ["text_layer: 2 control or zero-width characters left out"]


def test_text_path_costs_little_next_to_reading_the_text(samples):
    """The layout work stays a small multiple of mupdf's own text extraction (timed in the
    same process, best of five, so the machine's load cancels out)."""
    import time

    sample, loaded, _, _ = samples["tex_paper"]
    doc = pymupdf.open(stream=sample.data)

    def best(fn) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    extract = best(lambda: [p.get_text("dict") for p in doc])
    layout = best(lambda: [page_from_text_layer(p) for p in loaded])
    assert layout < 6 * extract, (layout, extract)


def test_pages_that_need_a_model_say_why_in_the_json_and_the_summary(tmp_path, capsys,
                                                                     monkeypatch):
    import json

    from dsocr_connectors.cli import main

    monkeypatch.delenv("DSOCR_MODEL", raising=False)
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "A born-digital page with a clean text layer.")
    broken = doc.new_page()
    broken.insert_text((72, 72), "Every glyph of this font lacks its Unicode mapping.",
                       fontname="tiro")
    font = broken.get_fonts()[0][0]
    doc.xref_set_key(font, "Encoding", "<< /Type /Encoding /Differences [33 "
                     + " ".join("/.notdef" for _ in range(33, 127)) + "] >>")
    doc.new_page()  # nothing on it: a scan would look like this
    (tmp_path / "in.pdf").write_bytes(doc.tobytes())
    assert main(["convert", str(tmp_path / "in.pdf"), "-o", str(tmp_path / "out"), "-q"]) == 2
    pages = json.loads((tmp_path / "out" / "in.json").read_text())["pages"]
    why = "100% of the text layer is U+FFFD replacement characters (glyphs without Unicode)"
    assert [p["reason"] for p in pages] == [
        None, f"needs a model (no model configured): {why}",
        "needs a model (no model configured): no text layer"]
    shown = capsys.readouterr().out
    assert f"in.pdf: pages 2 ({why})" in shown and "in.pdf: pages 3 (no text layer)" in shown


def test_loosely_justified_prose_is_not_a_table():
    """Lines of a narrow justified column whose word gaps grew past mupdf's limit (it splits
    them word by word) read as text: their middle words line up with nothing."""
    from tests.pdf_writer import TIMES, PageWriter, make_sample

    doc = pymupdf.open()
    writer = PageWriter(doc, layer_samples.LETTER)
    lines = [["Notwithstanding", "all", "international"], ["responsibilities", "and", "the"],
             ["considerations", "under", "extraordinary"], ["circumstances", "nevertheless",
                                                            "apply"]]
    for number, words in enumerate(lines):  # gaps of 1.3 em: mupdf splits from about 0.9
        width = sum(TIMES.text_length(w, fontsize=10) for w in words) + 13 * (len(words) - 1)
        writer.words(72, 100 + 12.5 * number, words, font=TIMES, size=10, width=width)
    sample = make_sample("loose", doc, layer_samples.LETTER, [writer])
    loaded = next(loaders.iter_pages(sample.data, dpi=18))
    assert len({(w.block, w.line) for w in loaded.text_layer.words}) > len(lines)  # split
    page = page_from_text_layer(loaded)
    assert not any(b.table for b in page.blocks)
    assert [b.content for b in page.blocks] == [" ".join(w for line in lines for w in line)]


def test_unruled_tables_need_aligned_columns():
    """Three rows of three short cells are a table only when each column shares an edge or
    a centre; the words of very loose prose are spread anywhere."""
    from dsocr_connectors.text_layer.lines import Line
    from dsocr_connectors.text_layer.tables import find_unruled_tables

    def rows(starts: list[list[float]]) -> list[Line]:
        return [Line(text=f"w{r}{c}", bbox=(x, 100 + 14 * r, x + 30, 110 + 14 * r), size=10,
                     is_bold=False, is_mono=False, block=r, numbers=(c,))
                for r, xs in enumerate(starts) for c, x in enumerate(xs)]

    grid = rows([[72, 200, 330], [72, 200, 330], [72, 200, 330]])
    [(table, taken)] = find_unruled_tables(grid, [])
    assert table.rows == [["w00", "w01", "w02"], ["w10", "w11", "w12"], ["w20", "w21", "w22"]]
    assert taken == set(range(9))
    prose = rows([[72, 150, 330], [72, 230, 330], [72, 190, 330]])  # middle words wander
    assert find_unruled_tables(prose, []) == []
    staggered = rows([[72, 150, 330], [72, 165, 330], [72, 180, 330]])  # one column, no edge
    assert find_unruled_tables(staggered, []) == []


def test_pictures_become_figure_blocks_with_their_labels_and_caption(tmp_path):
    """A raster image and a chart in vector drawing are figure blocks; the chart's tick
    labels are its content, the "Figure 2" paragraph under it its caption; a ruled table's
    lines and a horizontal rule are no figures, and no word is lost."""
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.new("RGB", (120, 80), (200, 30, 30)).save(photo)
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 80), "Results of the survey", fontsize=11)
    page.insert_image(pymupdf.Rect(72, 100, 252, 220), filename=str(photo))
    page.draw_line((72, 240), (520, 240))  # a rule: no figure
    for i, h in enumerate((60, 110, 85)):  # a bar chart, axis and bars drawn as vectors
        page.draw_rect(pymupdf.Rect(110 + 80 * i, 420 - h, 160 + 80 * i, 420), fill=(0, 0, 1))
    page.draw_line((100, 420), (360, 420))
    page.draw_line((100, 300), (100, 420))
    for i, label in enumerate(("North", "South", "West")):
        page.insert_text((115 + 80 * i, 432), label, fontsize=9)  # just below the axis
    page.insert_text((72, 452), "Figure 2: Responses by region.", fontsize=10)
    page.insert_text((72, 490), "The southern region answered most often.", fontsize=11)
    for r in range(3):  # a ruled table
        for c in range(2):
            page.draw_rect(pymupdf.Rect(72 + 100 * c, 520 + 20 * r, 172 + 100 * c, 540 + 20 * r))
            page.insert_text((76 + 100 * c, 535 + 20 * r), f"r{r}c{c}", fontsize=9)
    doc.save(tmp_path / "figures.pdf")

    (loaded,) = loaders.iter_pages(tmp_path / "figures.pdf")
    result = page_from_text_layer(loaded)
    figures = [b for b in result.blocks if b.type is BlockType.FIGURE]
    assert len(figures) == 2
    chart = max(figures, key=lambda b: b.boxes[0].y1)
    assert chart.content.split() == ["North", "South", "West"]
    assert chart.figure is not None and chart.figure.caption.startswith("Figure 2:")
    (caption,) = [b for b in result.blocks if b.type is BlockType.FIGURE_CAPTION]
    assert caption.content == "Figure 2: Responses by region."
    assert [b.type for b in result.blocks].count(BlockType.TABLE) == 1
    text = " ".join(b.content for b in result.blocks)
    for word in ("Results", "southern", "North", "r2c1"):
        assert word in text
