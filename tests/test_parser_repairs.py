"""Repairs of broken model output: tag parts, several tables in a block, bad cells, junk
tables, huge spans, equation numbers, text in figures; and the Markdown options for them.

Each case of issue #10 (and #11 item 4) as a targeted test; the generated versions are in
test_parser_properties.py.
"""

from __future__ import annotations

import re
import time

from dsocr_connectors.document import BlockType, Document
from dsocr_connectors.parsing import missing_characters, parse_page
from dsocr_connectors.parsing.tables import MAX_GRID_CELLS

HEAD = "<|ref|>{label}<|/ref|><|det|>[[10, 20, 900, 80]]<|/det|>\n"
COORDS_RE = re.compile(r"\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+")


def block(text: str, label: str = "text") -> str:
    return HEAD.format(label=label) + text + "\n\n"


def no_tag_parts(markdown: str) -> bool:
    return "<|" not in markdown and "|>" not in markdown and not COORDS_RE.search(markdown)


# --- tag parts ---------------------------------------------------------------------------

def test_coordinates_after_ref_without_det_open_are_the_box() -> None:
    raw = block("Intro.") + "<|ref|>equation<|/ref|>[150, 533, 789, 620]]<|/det|>\n\\[ E = mc^2 \\]\n\n"
    page = parse_page(raw)
    equation = page.blocks[1]
    assert equation.type is BlockType.EQUATION and equation.content == "\\[ E = mc^2 \\]"
    assert [(b.x1, b.y1, b.x2, b.y2) for b in equation.boxes] == [(150, 533, 789, 620)]
    assert "missing_det_open" in equation.flags
    assert [r.kind for r in equation.repairs] == ["coordinates_from_text"]
    assert no_tag_parts(page.to_markdown()) and missing_characters(raw, page) == ""


def test_coordinates_before_a_stray_det_close_are_the_box() -> None:
    raw = block("Intro.") + "<|ref|>text<|/ref|>\n[[100, 200, 300, 400]]<|/det|>\nBody text.\n\n"
    page = parse_page(raw)
    assert [b.content for b in page.blocks] == ["Intro.", "Body text."]
    assert page.blocks[1].boxes[0].x1 == 100 and no_tag_parts(page.to_markdown())


def test_known_label_before_a_stray_ref_close_starts_its_block() -> None:
    raw = (
        block("\\[ a = b \\]", "equation")
        + "equation<|/ref|><|det|>[[100, 200, 300, 400]]<|/det|>\n\\[ c = d \\]\n\n"
    )
    page = parse_page(raw)
    first, second = page.blocks
    assert first.content == "\\[ a = b \\]" and first.equation.latex == "a = b"  # not polluted
    assert (second.type, second.label, second.content) == (BlockType.EQUATION, "equation", "\\[ c = d \\]")
    assert "missing_ref_open" in second.flags and second.boxes[0].y1 == 200
    assert no_tag_parts(page.to_markdown()) and missing_characters(raw, page) == ""


def test_det_holding_latex_is_content() -> None:
    raw = "<|ref|>equation<|/ref|><|det|>\\[ [0, 1] \\times [0, 1] \\]<|/det|>\n\n" + block("After.")
    page = parse_page(raw)
    assert page.blocks[0].content == "\\[ [0, 1] \\times [0, 1] \\]"
    assert "det_without_coords" in page.blocks[0].flags and "stray_tag" not in page.flags
    assert "[0, 1] \\times [0, 1]" in page.to_markdown()


def test_bracketed_term_after_det_is_not_read_as_coordinates() -> None:
    raw = "<|ref|>text<|/ref|><|det|>[0, 1] is the interval<|/det|>"
    page = parse_page(raw)
    assert page.blocks[0].content == "[0, 1] is the interval" and page.blocks[0].boxes == []


def test_stray_det_without_coordinates_inside_text_does_not_split_it() -> None:
    raw = block("Some text") + "<|det|>and more text"
    page = parse_page(raw)
    assert [b.content for b in page.blocks] == ["Some text\n\nand more text"]
    assert "stray_tag" in page.flags


def test_a_counting_loop_inside_a_det_is_coordinates_not_content() -> None:
    count = " ".join(f"{i} 0 0 0 0" for i in range(400))
    raw = block("Real text.") + f"<|ref|>equation<|/ref|><|det|>[[390, Strikz {count}"
    page = parse_page(raw)
    assert page.to_markdown() == "Real text."
    assert "repetition" in page.flags and missing_characters(raw, page) == ""
    (repair,) = page.blocks[-1].repairs
    assert repair.kind == "coordinates_loop" and repair.length > 2000


def test_a_5000_digit_coordinate_parses() -> None:
    page = parse_page(block("Hello", "text").replace("[[10,", "[[" + "9" * 5000 + ","))
    assert page.errors == [] and page.blocks[0].content == "Hello"
    assert "box_clamped" in page.flags and "repetition" not in page.flags


# --- tables ------------------------------------------------------------------------------

def test_two_tables_in_one_block_and_text_around_them() -> None:
    one = "<table><tr><td>a</td><td>1</td></tr></table>"
    two = "<table><tr><td>b</td><td>2</td></tr><tr><td>c</td><td>3</td></tr></table>"
    raw = block(f"Before the tables.\n{one}<br><br>{two}\nNote: values in tons.", "table")
    page = parse_page(raw)
    assert [b.type.value for b in page.blocks] == ["text", "table", "table", "text"]
    assert [b.table.num_rows for b in page.blocks if b.table] == [1, 2]
    assert all("split_block" in b.flags and b.label == "table" for b in page.blocks)
    markdown = page.to_markdown()
    assert markdown.index("Before") < markdown.index(">a<") < markdown.index(">c<") < markdown.index("tons")
    assert missing_characters(raw, page) == ""


def test_cell_with_a_bad_quote_keeps_its_cell() -> None:
    page = parse_page(block("<table><tr><td colspan='3\">B</td><td>C</td></tr></table>", "table"))
    table = page.blocks[0].table
    assert [(c.text, c.col_span) for c in table.cells] == [("B", 3), ("C", 1)]
    assert "bad_attribute" in table.flags and "malformed_table" in page.flags
    assert ">B<" in page.to_markdown()


def test_text_outside_cells_reaches_the_markdown() -> None:
    page = parse_page(block("<table>Units: kg<tr><td>x</td></tr></table>", "table"))
    assert page.blocks[0].table.outside_text == ["Units: kg"]
    assert "Units: kg" in page.to_markdown()


def test_junk_table_of_escaped_tokens_is_flagged_and_left_out_of_markdown() -> None:
    junk = "<table><tr><td>&lt;fcel&gt;&lt;fcel&gt;&lt;nl&gt;</td><td>&lt;ecel&gt;</td></tr></table>"
    page = parse_page(block("Real caption.") + block(junk, "table"))
    table_block = page.blocks[1]
    assert "hallucinated" in table_block.table.flags and "hallucinated_table" in table_block.flags
    assert table_block.repairs[0].kind == "table_dropped"
    assert page.to_markdown() == "Real caption."
    assert "&lt;fcel&gt;" in page.model_dump_json()  # kept in JSON


def test_huge_spans_are_capped_fast() -> None:
    rows = '<tr><td rowspan="100000" colspan="1000">x</td></tr>' * 200
    raw = block(f"<table>{rows}</table>", "table")
    assert len(raw) > 10_000
    start = time.perf_counter()
    page = parse_page(raw)
    page.to_markdown(tables="pipe")
    assert time.perf_counter() - start < 2.0
    table = page.blocks[0].table
    assert "span_clamped" in table.flags and table.num_rows * table.num_cols <= MAX_GRID_CELLS


# --- equations and figures ---------------------------------------------------------------

def test_equation_number_is_taken_out_of_the_latex() -> None:
    page = parse_page(block("\\[ x^2 + y^2 = z^2 \\quad (3) \\]", "equation"))
    equation = page.blocks[0].equation
    assert (equation.latex, equation.number) == ("x^2 + y^2 = z^2", "3")
    assert page.to_markdown() == "$$\nx^2 + y^2 = z^2 \\tag{3}\n$$"
    assert page.to_markdown(equation_numbers=False) == "$$\nx^2 + y^2 = z^2\n$$"


def test_tag_and_section_numbers() -> None:
    for written, number in [("\\tag{2.1}", "2.1"), ("\\qquad (A.4)", "A.4"), ("~(12b)", "12b")]:
        equation = parse_page(block(f"\\[ a = b {written} \\]", "equation")).blocks[0].equation
        assert (equation.latex, equation.number) == ("a = b", number)


def test_a_product_is_not_an_equation_number() -> None:
    equation = parse_page(block("\\[ y = (a+b)(3) \\]", "equation")).blocks[0].equation
    assert (equation.latex, equation.number) == ("y = (a+b)(3)", None)


def test_text_inside_a_figure_block_is_exported_after_the_figure() -> None:
    raw = block("# 本报记者于洪光", "image") + block("Body.")
    page = parse_page(raw)
    assert page.blocks[0].type is BlockType.FIGURE
    assert page.to_markdown() == "# 本报记者于洪光\n\nBody."
    assert page.to_markdown(image_dir="img").startswith("![figure](img/page-0001-block-000.png)\n\n# 本报")


# --- exports and records -----------------------------------------------------------------

def test_loop_marker_is_an_option_and_the_records_stay() -> None:
    page = parse_page(block("Intro: " + "肇源县、" * 30))
    assert "<!--" in page.to_markdown()
    assert page.to_markdown(loop_marker=False) == "Intro: 肇源县、"
    assert "repetition" in page.flags and page.blocks[0].repairs[0].kind == "loop_cut"


def test_repairs_round_trip_through_json() -> None:
    raw = block("Intro: " + "肇源县、" * 30) + block("<table>" + "<tr><td>a</td></tr>" * 9 + "<tr><td>a", "table")
    doc = Document(source="x.pdf", pages=[parse_page(raw)])
    again = Document.from_json(doc.to_json())
    assert again == doc
    assert [r.kind for b in again.pages[0].blocks for r in b.repairs] == ["loop_cut", "rows_cut"]
