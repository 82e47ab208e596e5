"""Exports: tables with spans, Markdown, HTML, layout previews and figure crops."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

from dsocr_connectors.document import Document
from dsocr_connectors.export import (
    document_to_html,
    draw_layout,
    save_figure_crops,
    save_previews,
)
from dsocr_connectors.parsing import parse_page, parse_table

DATA = Path(__file__).parent / "data" / "raw_outputs"
SPANNED = (
    '<table><tr><td rowspan="2">Method</td><td colspan="2">N2O</td></tr>'
    "<tr><td>mg</td><td>%</td></tr><tr><td>a|b</td><td>1.5</td><td>2<br>3</td></tr></table>"
)


def raw(prefix: str) -> str:
    (path,) = DATA.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def test_table_markdown_spans_and_escapes() -> None:
    md = parse_table(SPANNED).to_markdown().splitlines()
    assert md[0] == "| Method | N2O / mg | N2O / % |"
    assert md[1] == "| --- | --- | --- |"
    assert md[2] == "| a\\|b | 1.5 | 2<br>3 |"


def test_table_html_round_trips_through_the_parser() -> None:
    table = parse_table(SPANNED)
    html = table.to_html()
    assert '<th rowspan="2">Method</th>' in html and "<thead>" in html
    again = parse_table(html)
    assert again.cells == table.cells and again.header_rows == table.header_rows


def test_table_csv_and_dataframe_repeat_spans() -> None:
    table = parse_table(SPANNED)
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows == [["Method", "N2O", "N2O"], ["Method", "mg", "%"], ["a|b", "1.5", "2\n3"]]
    frame = table.to_dataframe()
    assert list(frame.columns) == [("Method", "Method"), ("N2O", "mg"), ("N2O", "%")]
    assert frame.iloc[0, 1] == "1.5"


def test_markdown_of_a_real_page() -> None:
    page = parse_page(raw("002"))
    md = page.to_markdown(tables="pipe")
    assert "| Application method |" in md and "<center>" not in md
    assert "## Discussion" in md
    assert "![figure]" not in md  # no crop, no image dir
    linked = page.to_markdown(image_dir="imgs")
    assert "![figure](imgs/page-0001-block-000.png)" in linked
    assert "<table><thead>" in linked


def test_markdown_cuts_loops_unless_asked() -> None:
    page = parse_page(raw("012"))
    cut, kept = page.to_markdown(), page.to_markdown(loops="keep")
    assert cut.count("\\frac{1}{2}\\sin") < 5 < kept.count("\\frac{1}{2}\\sin")
    assert "repetition" in cut


def test_document_markdown_has_page_separators() -> None:
    doc = Document(source="x", pages=[parse_page("a", number=1), parse_page("b", number=2)])
    assert doc.to_markdown() == "a\n\n<--- Page Split --->\n\nb"
    assert doc.to_markdown(page_separator="\n---\n") == "a\n---\nb"


def test_html_places_boxes_when_size_known() -> None:
    page = parse_page(raw("002"), image_size=(1000, 1400))
    html = document_to_html(Document(source="p.pdf", pages=[page]))
    assert html.count('class="box"') == sum(len(b.boxes) for b in page.blocks)
    assert "left:36.04%" in html and "<h2>Discussion</h2>" in html
    no_size = document_to_html(Document(source="p", pages=[parse_page(raw("002"))]))
    assert 'class="box"' not in no_size and "Application method" in no_size


def test_html_escapes_model_text() -> None:
    page = parse_page("<script>alert(1)</script>")
    assert "<script>" not in document_to_html(Document(source="s", pages=[page]))


def test_layout_preview_and_crops(tmp_path: Path) -> None:
    page = parse_page(raw("002"), image_size=(200, 280))
    image = Image.new("RGB", (200, 280), "white")
    drawn = draw_layout(page, image)
    assert drawn.size == image.size and drawn.getpixel((72, 50)) != (255, 255, 255)
    assert image.getpixel((72, 50)) == (255, 255, 255)  # the input is not modified
    doc = Document(source="s", pages=[page])
    (path,) = save_previews(doc, [image], tmp_path)
    assert path.name == "page-0001-layout.png" and path.exists()
    (crop,) = save_figure_crops(page, image, tmp_path)
    assert page.blocks[0].figure.crop_path == str(crop)
    assert Image.open(crop).size == (111, 143)
    assert f"![figure]({crop})" in page.to_markdown()


def test_looped_table_rows_are_cut() -> None:
    page = parse_page(raw("014"))
    table = page.blocks[-1].table
    (flag,) = [f for f in table.flags if f.startswith("loop_start_row:")]
    keep = int(flag.split(":")[1])
    md = page.to_markdown()
    assert md.count("<tr>") == keep < table.num_rows
    assert page.to_markdown(loops="keep").count("<tr>") == table.num_rows
