"""`dsocr_connectors.unstructured`: Documents as unstructured elements, `partition_dsocr`."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("unstructured.documents.elements")

from unstructured.documents import elements as el  # noqa: E402
from unstructured.documents.coordinates import (  # noqa: E402
    PixelSpace,
    RelativeCoordinateSystem,
)
from unstructured.staging.base import elements_from_json, elements_to_json  # noqa: E402

from dsocr_connectors.document import (  # noqa: E402
    Block,
    BlockType,
    Box,
    ChartData,
    ChartSeries,
    Chemistry,
    Document,
    Equation,
    Figure,
    Page,
    PageStatus,
)
from dsocr_connectors.parsing import parse_table  # noqa: E402
from dsocr_connectors.unstructured import (  # noqa: E402
    PAYLOAD_KEY,
    element_id,
    partition_dsocr,
    to_elements,
)

ROOT = Path(__file__).resolve().parent.parent
TABLE_HTML = ("<table><tr><td>Site</td><td>Nitrate</td></tr>"
              "<tr><td rowspan=2>R-01</td><td>3.5</td></tr><tr><td>4 &amp; 5</td></tr></table>")
PROSE = "Nitrate rose at every site downstream of the works."


def flat(points) -> list[float]:
    return [v for point in points for v in point]


def blk(index: int, kind: BlockType, content: str = "", box=(100, 100, 900, 150),
        label: str | None = None, **extra) -> Block:
    return Block(index=index, type=kind, label=label if label is not None else kind.value,
                 content=content, boxes=[Box(x1=box[0], y1=box[1], x2=box[2], y2=box[3])],
                 **extra)


def every_type_page(number: int = 1, size: tuple[int, int] | None = (1000, 2000)) -> Page:
    chart = ChartData(title="Nitrate", chart_type="bar", categories=["R-1", "R-2"],
                      series=[ChartSeries(name="mg/L", values=[3.5, 4.0],
                                          raw_values=["3.5", "4.0"])])
    blocks = [
        blk(0, BlockType.HEADER, "Water Report 2024"),
        blk(1, BlockType.TITLE, "# Spring Water Quality", heading_level=1),
        blk(2, BlockType.SECTION_HEADING, "## 1. Sites", label="sub_title", heading_level=2),
        blk(3, BlockType.TEXT, PROSE),
        blk(4, BlockType.TEXT, "R-27 R-28"),
        blk(5, BlockType.LIST_ITEM, "- first site"),
        blk(6, BlockType.TABLE_CAPTION, "Table 1: Nitrate by site."),
        blk(7, BlockType.TABLE, TABLE_HTML, table=parse_table(TABLE_HTML)),
        blk(8, BlockType.TABLE_FOOTNOTE, "Values are monthly means of samples."),
        blk(9, BlockType.FIGURE, "", label="image",
            figure=Figure(crop_path="crops/p1_b9.png", caption="Figure 1"), chart=chart),
        blk(10, BlockType.FIGURE_CAPTION, "Figure 1: Nitrate by site.", label="image_caption"),
        blk(11, BlockType.FIGURE, "", label="image",
            chemistry=Chemistry(smiles="OCC", canonical_smiles="CCO")),
        blk(12, BlockType.FIGURE_FOOTNOTE, "Source: survey"),
        blk(13, BlockType.EQUATION, r"\[E = mc^2\]", equation=Equation(latex="E = mc^2")),
        blk(14, BlockType.LINE, "a recognised line", label=""),
        blk(15, BlockType.UNKNOWN, "text_begin stray words", label="text_begin"),
        blk(16, BlockType.FOOTER, "Confidential"),
        blk(17, BlockType.PAGE_NUMBER, "1"),
    ]
    width, height = size if size else (None, None)
    return Page(number=number, image_width=width, image_height=height, blocks=blocks,
                flags=["eos_text"])


def test_every_block_type_maps_to_its_element():
    doc = Document(source="/data/reports/water.pdf", pages=[every_type_page()])
    elements = to_elements(doc)
    assert [type(e) for e in elements] == [
        el.Header, el.Title, el.Title, el.NarrativeText, el.Text, el.ListItem,
        el.FigureCaption, el.Table, el.NarrativeText, el.Image, el.FigureCaption, el.Image,
        el.Text, el.Formula, el.Text, el.Text, el.Footer, el.PageNumber,
    ]
    texts = [e.text for e in elements]
    assert texts[1:3] == ["Spring Water Quality", "1. Sites"]  # no Markdown marks
    assert texts[5] == "first site"  # bullet removed
    assert texts[13] == "E = mc^2"  # the LaTeX without delimiters
    assert texts[15] == "text_begin stray words"
    assert [e.metadata.category_depth for e in elements[1:3]] == [0, 1]
    chart_image, smiles_image = elements[9], elements[11]
    assert "mg/L: 3.5, 4.0" in chart_image.text and "R-1, R-2" in chart_image.text
    assert chart_image.metadata.image_path == "crops/p1_b9.png"
    assert chart_image.metadata.to_dict()[PAYLOAD_KEY]["chart"]["categories"] == ["R-1", "R-2"]
    assert smiles_image.text == "SMILES: CCO"
    assert smiles_image.metadata.image_path is None
    for element in elements:
        assert element.metadata.page_number == 1
        assert element.metadata.filename == "water.pdf"
        assert element.metadata.file_directory == "/data/reports"
        assert element.metadata.filetype == "application/pdf"
        assert element.metadata.languages is None


def test_table_element_has_html_and_cell_text():
    doc = Document(source="t.pdf", pages=[every_type_page()])
    table = next(e for e in to_elements(doc) if isinstance(e, el.Table))
    assert table.text == "Site Nitrate\nR-01 3.5\n4 & 5"
    html = table.metadata.text_as_html
    assert html.startswith("<table>") and 'rowspan="2"' in html and "4 &amp; 5" in html
    assert table.metadata.to_dict()["text_as_html"] == html


def test_unknown_block_holding_a_table_is_a_table():
    block = blk(0, BlockType.UNKNOWN, TABLE_HTML, label="table C1", table=parse_table(TABLE_HTML))
    doc = Document(source="t.pdf", pages=[Page(number=1, blocks=[block])])
    (element,) = to_elements(doc)
    assert isinstance(element, el.Table) and element.metadata.text_as_html


def test_coordinates_in_pixels_of_the_page_image():
    doc = Document(source="t.pdf", pages=[every_type_page(size=(1000, 2000))])
    coords = to_elements(doc)[3].metadata.coordinates  # box (100, 100, 900, 150)
    assert coords.system == PixelSpace(width=1000, height=2000)
    x1, y1, x2, y2 = 100 / 999 * 1000, 100 / 999 * 2000, 900 / 999 * 1000, 150 / 999 * 2000
    expected = ((x1, y1), (x1, y2), (x2, y2), (x2, y1))
    assert flat(coords.points) == pytest.approx(flat(expected), abs=0.051)


def test_relative_coordinates_without_image_size_convert_to_pixels():
    pixel = to_elements(Document(source="t.pdf", pages=[every_type_page(size=(1000, 2000))]))
    relative = to_elements(Document(source="t.pdf", pages=[every_type_page(size=None)]))
    coords = relative[3].metadata.coordinates
    assert isinstance(coords.system, RelativeCoordinateSystem)
    assert all(0 <= v <= 1 for point in coords.points for v in point)
    # RelativeCoordinateSystem has y up: converting gives the same pixel corners
    converted = relative[3].convert_coordinates_to_new_system(PixelSpace(1000, 2000),
                                                              in_place=False)
    assert flat(converted) == pytest.approx(flat(pixel[3].metadata.coordinates.points), abs=0.2)


def test_union_of_boxes_and_block_without_boxes():
    two = Block(index=0, type=BlockType.TEXT, label="text", content=PROSE,
                boxes=[Box(x1=100, y1=100, x2=450, y2=500), Box(x1=550, y1=50, x2=900, y2=400)])
    none = Block(index=1, type=BlockType.TEXT, label="", content=PROSE)
    page = Page(number=1, image_width=999, image_height=999, blocks=[two, none])
    first, second = to_elements(Document(source="t.pdf", pages=[page]))
    assert first.metadata.coordinates.points == ((100, 50), (100, 500), (900, 500), (900, 50))
    assert first.metadata.to_dict()[PAYLOAD_KEY]["boxes"] == [[100, 100, 450, 500],
                                                              [550, 50, 900, 400]]
    assert second.metadata.coordinates is None


def test_parent_ids_follow_headings_across_pages():
    page1 = Page(number=1, blocks=[
        blk(0, BlockType.HEADER, "Running head"),
        blk(1, BlockType.TITLE, "# Report", heading_level=1),
        blk(2, BlockType.TEXT, PROSE),
        blk(3, BlockType.SECTION_HEADING, "## Methods", heading_level=2),
        blk(4, BlockType.SECTION_HEADING, "### Sampling", heading_level=3),
        blk(5, BlockType.TEXT, PROSE),
    ])
    page2 = Page(number=2, blocks=[
        blk(0, BlockType.TABLE, TABLE_HTML, table=parse_table(TABLE_HTML)),
        blk(1, BlockType.SECTION_HEADING, "## Results", heading_level=2),
        blk(2, BlockType.FIGURE, ""),
        blk(3, BlockType.PAGE_NUMBER, "2"),
    ])
    elements = to_elements(Document(source="r.pdf", pages=[page1, page2]))
    ids = [e.id for e in elements]
    parents = [e.metadata.parent_id for e in elements]
    title, methods, sampling, results = ids[1], ids[3], ids[4], ids[7]
    assert parents == [None, None, title, title, methods, sampling,  # page 1
                       sampling, title, results, None]  # page 2: the section goes on
    assert elements[8].metadata.page_number == 2


def test_element_ids_are_stable_and_distinct():
    def ids() -> list[str]:
        doc = Document(source="water.pdf", pages=[every_type_page(1), every_type_page(2)])
        return [e.id for e in to_elements(doc)]

    first = ids()
    assert first == ids()
    assert len(set(first)) == len(first)
    assert first[0] == element_id("water.pdf", 1, 0)
    assert element_id("other.pdf", 1, 0) != first[0]


def test_payload_carries_status_flags_and_label():
    page = every_type_page()
    page.status = PageStatus.RECOVERED
    page.blocks[3].flags.append("repetition")
    element = to_elements(Document(source="t.pdf", pages=[page]))[3]
    payload = element.metadata.to_dict()[PAYLOAD_KEY]
    assert payload == {"block_type": "text", "label": "text", "block_index": 3,
                       "boxes": [[100, 100, 900, 150]], "page_label": "1",
                       "page_status": "recovered", "page_flags": ["eos_text"],
                       "flags": ["repetition"]}


def test_page_without_blocks_is_logged_not_hidden(caplog):
    failed = Page(number=2, status=PageStatus.FAILED, reason="needs a model")
    doc = Document(source="scan.pdf", pages=[every_type_page(1), failed])
    with caplog.at_level(logging.WARNING, logger="dsocr_connectors.unstructured"):
        elements = to_elements(doc)
    assert {e.metadata.page_number for e in elements} == {1}
    assert "scan.pdf page 2" in caplog.text and "failed: needs a model" in caplog.text


def test_page_breaks_between_pages():
    doc = Document(source="t.pdf", pages=[every_type_page(1), every_type_page(2)])
    elements = to_elements(doc, include_page_breaks=True)
    breaks = [i for i, e in enumerate(elements) if isinstance(e, el.PageBreak)]
    assert breaks == [18]
    assert elements[19].metadata.page_number == 2


@pytest.fixture(scope="module")
def born_digital() -> list[el.Element]:
    return partition_dsocr(ROOT / "examples" / "born_digital.pdf")


def test_partition_born_digital_pdf_without_a_model(born_digital):
    kinds = {type(e) for e in born_digital}
    assert {el.Title, el.NarrativeText, el.Table} <= kinds
    assert {e.metadata.page_number for e in born_digital} == {1, 2}
    assert born_digital[0].text == "Spring Water Quality Report"
    tables = [e for e in born_digital if isinstance(e, el.Table)]
    assert [t.metadata.page_number for t in tables] == [1, 2]
    assert all(t.metadata.text_as_html.startswith("<table>") for t in tables)
    assert all(isinstance(e.metadata.coordinates.system, PixelSpace) for e in born_digital)
    assert all(e.metadata.filename == "born_digital.pdf" for e in born_digital)
    assert all(e.metadata.to_dict()[PAYLOAD_KEY]["page_status"] == "ok" for e in born_digital)


def test_partition_file_object_matches_filename(born_digital):
    data = (ROOT / "examples" / "born_digital.pdf").read_bytes()
    named = partition_dsocr(file=io.BytesIO(data), metadata_filename="born_digital.pdf")
    assert [(type(e), e.text) for e in named] == [(type(e), e.text) for e in born_digital]
    assert named[0].metadata.filename == "born_digital.pdf"
    unnamed = partition_dsocr(file=io.BytesIO(data))
    assert unnamed[0].metadata.filename.startswith("stream-")
    assert [e.id for e in partition_dsocr(file=data)] == [e.id for e in unnamed]


def test_partition_needs_exactly_one_input():
    with pytest.raises(ValueError, match="exactly one"):
        partition_dsocr()
    with pytest.raises(ValueError, match="exactly one"):
        partition_dsocr("a.pdf", file=b"%PDF")
    with pytest.raises(FileNotFoundError, match="missing.pdf"):
        partition_dsocr(ROOT / "missing.pdf")
    with pytest.raises(TypeError, match="binary"):
        partition_dsocr(file=io.StringIO("%PDF-1.7"))


def test_json_round_trip(born_digital, tmp_path):
    doc = Document(source="t.pdf", pages=[every_type_page(1), every_type_page(2, size=None)])
    for elements in (born_digital, to_elements(doc, include_page_breaks=True)):
        back = elements_from_json(text=elements_to_json(elements))
        assert [type(e) for e in back] == [type(e) for e in elements]
        assert [e.id for e in back] == [e.id for e in elements]
        for before, after in zip(elements, back):
            want, got = before.metadata.to_dict(), after.metadata.to_dict()
            coords_before, coords_after = want.pop("coordinates", None), got.pop("coordinates",
                                                                                  None)
            assert got == want
            if coords_before is not None:  # unstructured writes relative values to 0.01
                assert coords_after["system"] == coords_before["system"]
                assert flat(coords_after["points"]) == pytest.approx(
                    flat(coords_before["points"]), abs=0.0051)
    assert elements_from_json(text=elements_to_json(born_digital)) == born_digital
    path = tmp_path / "elements.json"
    elements_to_json(born_digital, filename=str(path))
    assert elements_from_json(filename=str(path)) == born_digital


def test_importing_the_package_does_not_import_unstructured():
    code = ("import sys, dsocr_connectors, dsocr_connectors.pipeline, dsocr_connectors.metadata;"
            "print('unstructured' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
