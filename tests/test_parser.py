"""The parser on every real DeepSeek-OCR output in tests/data/raw_outputs, plus targeted cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsocr_connectors.document import BlockType
from dsocr_connectors.parsing import (
    EOS_TEXT,
    missing_characters,
    parse_boxes,
    parse_page,
    parse_table,
    split_pages,
)

DATA = Path(__file__).parent / "data" / "raw_outputs"
FILES = sorted(DATA.glob("*.txt"))
PROMPTS = {"043": "<image>\n<|grounding|>OCR this image.", "047": "<image>\nFree OCR."}


def load(prefix: str):
    (path,) = [p for p in FILES if p.name.startswith(prefix)]
    raw = path.read_text(encoding="utf-8")
    return raw, parse_page(raw, image_size=(1000, 1400), prompt=PROMPTS.get(prefix))


def types(page) -> list[str]:
    return [b.type.value for b in page.blocks]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:3])
def test_every_real_output_parses_without_loss(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    page = parse_page(raw)
    assert page.errors == []
    assert "parse_error" not in page.flags
    assert missing_characters(raw, page) == ""
    for block in page.blocks:
        for box in block.boxes:
            assert 0 <= box.x1 <= box.x2 <= 999 and 0 <= box.y1 <= box.y2 <= 999
    assert page.raw_output == raw


def test_at_least_44_real_files_are_tested() -> None:
    assert len(FILES) >= 43


def test_clean_paper_page_equations_and_heading() -> None:
    _, page = load("001")
    assert page.flags == []
    equations = [b for b in page.blocks if b.type is BlockType.EQUATION]
    assert len(equations) == 7
    assert all(b.equation is not None and b.equation.display for b in equations)
    assert not equations[0].equation.latex.startswith("\\[")
    assert types(page).count("section_heading") == 1


def test_table_caption_quirk_moves_html_to_table() -> None:
    _, page = load("002")
    assert types(page)[:4] == ["figure", "figure_caption", "table_caption", "table"]
    caption, table = page.blocks[2], page.blocks[3]
    assert "<table" not in caption.content and caption.content.startswith("Table 4")
    assert "html_from_caption" in table.flags
    assert (table.table.num_rows, table.table.num_cols, table.table.header_rows) == (7, 7, 2)
    first = table.table.cells[0]
    assert (first.text, first.row_span, first.is_header) == ("Application method", 2, True)
    assert table.table.grid()[1][0] == "Application method"
    assert page.blocks[0].figure.caption.startswith("Fig. 3 Time course")
    assert len(page.blocks[5].boxes) == 2  # one text block over two columns


def test_images_with_captions_and_footnotes() -> None:
    _, page = load("005")
    assert types(page).count("figure") == 5
    assert types(page).count("figure_footnote") == 5
    assert page.blocks[0].figure.caption == "图12本轮上涨中A股风险溢价持续走低"


@pytest.mark.parametrize(
    "prefix", ["008", "009", "011", "012", "014", "016", "017", "019", "030", "032", "033", "034"]
)
def test_loop_files_are_flagged(prefix: str) -> None:
    _, page = load(prefix)
    assert "repetition" in page.flags


@pytest.mark.parametrize("prefix", ["008", "009", "012", "014", "017", "030", "033", "040"])
def test_truncated_files_are_flagged(prefix: str) -> None:
    _, page = load(prefix)
    assert "truncated" in page.flags


@pytest.mark.parametrize("prefix", ["001", "002", "022", "025", "045", "052", "058", "061"])
def test_clean_files_have_no_loop_or_truncation(prefix: str) -> None:
    _, page = load(prefix)
    assert not {"repetition", "truncated"} & set(page.flags)


def test_repeated_identical_blocks_are_kept_and_marked() -> None:
    _, page = load("012")
    repeated = [b for b in page.blocks if "repeated_block" in b.flags]
    assert len(repeated) > 90
    first = page.blocks.index(repeated[0])
    assert "repeated_block" not in page.blocks[first - 1].flags  # one copy stays content


def test_text_loop_offset_keeps_the_text_before_the_loop() -> None:
    _, page = load("019")
    block = page.blocks[-1]
    (flag,) = [f for f in block.flags if f.startswith("loop_start:")]
    offset = int(flag.split(":")[1])
    assert block.content[:offset].startswith("陈忠实，男，汉族")
    assert len(block.content) - offset > 5000


def test_table_row_loop_in_open_table() -> None:
    _, page = load("014")
    table = page.blocks[-1].table
    assert "unclosed_table" in table.flags and "repetition" in table.flags
    assert any(f.startswith("loop_start_row:") for f in table.flags)


def test_legit_repeated_blocks_are_not_a_loop() -> None:
    _, page = load("022")
    assert len(page.blocks) == 32 and page.flags == []


def test_nested_and_unclosed_rows_are_repaired() -> None:
    _, page = load("028")
    first = [b for b in page.blocks if b.table is not None][0].table
    assert "nested_tr" in first.flags
    assert first.num_rows == 4 and first.cells[3].text == "p"
    collapsed = page.blocks[-1]
    assert collapsed.label == "table" and "unclosed_ref" in collapsed.flags
    assert collapsed.table is not None and collapsed.table.num_rows == 7
    assert "malformed_table" in page.flags


def test_unknown_label_kept_verbatim_with_its_table() -> None:
    _, page = load("042")
    (odd,) = [b for b in page.blocks if b.type is BlockType.UNKNOWN]
    assert odd.label == "table C1" and "unknown_label" in odd.flags
    assert odd.table is not None and odd.table.num_cols == 3
    assert "nested_tr" in odd.table.flags


def test_unclosed_refs_and_missing_det() -> None:
    _, page = load("036")
    assert {"unclosed_ref", "missing_det", "box_empty"} <= set(page.flags)
    unclosed = [b for b in page.blocks if "unclosed_ref" in b.flags]
    assert unclosed and all(b.label == "text" for b in unclosed)
    assert unclosed[0].content.startswith("D: Die Augensumme ist ungerade")


def test_carriage_return_unclosed_ref_is_an_equation() -> None:
    _, page = load("038")
    last = page.blocks[-1]
    assert last.type is BlockType.EQUATION and last.label == "equation"
    assert "\r" not in last.content and last.equation.latex.startswith("I = \\int")


def test_det_holding_latex_keeps_it_as_content() -> None:
    _, page = load("039")
    last = page.blocks[-1]
    assert last.content == "\\[F(x) = 3x^3 + 4x^2 - x + c.\\]" and "unclosed_det" in last.flags
    assert "box_clamped" in page.flags  # [-1, 280, 339, 304]]


def test_line_grounding() -> None:
    _, page = load("043")
    assert set(types(page)) == {"line"} and len(page.blocks) == 55
    assert page.blocks[0].content == "Начало процесса" and page.blocks[0].boxes
    _, auto = load("055")  # no prompt: detected from the refs
    assert types(auto) == ["line"] * 3


def test_plain_outputs() -> None:
    _, page = load("047")
    assert set(types(page)) == {"text"} and len(page.blocks) == 4
    _, untagged = load("061")
    assert len(untagged.blocks) == 12
    assert untagged.blocks[0].content == "Storybook Reading for Young Dual Language Learners"


def test_single_image_and_title_pages() -> None:
    assert types(load("020")[1]) == ["figure"]
    _, title = load("056")
    assert types(title) == ["title"] and title.blocks[0].heading_level == 1


def test_heading_levels_from_hashes() -> None:
    _, page = load("023")
    levels = {b.heading_level for b in page.blocks if b.type is BlockType.SECTION_HEADING}
    assert levels >= {2, 3, 4}


def test_form_with_many_tables() -> None:
    _, page = load("025")
    assert len([b for b in page.blocks if b.table is not None]) == 6


def test_eos_text_is_stripped_and_flagged() -> None:
    raw = "<|ref|>text<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\nHello" + EOS_TEXT
    page = parse_page(raw)
    assert page.blocks[0].content == "Hello" and "eos_text" in page.flags


def test_boxes_clamped_inverted_and_several() -> None:
    boxes, flags = parse_boxes("[[1000, 5, -3, 10], [1, 2, 3, 4]]")
    assert [(b.x1, b.y1, b.x2, b.y2) for b in boxes] == [(0, 5, 999, 10), (1, 2, 3, 4)]
    assert flags == ["box_clamped", "box_inverted"]
    assert parse_boxes("[[902, 940, 920,")[1] == ["unbalanced_box"]


def test_text_outside_blocks_and_stray_tags() -> None:
    raw = "preface\n\n<|/det|><|ref|>text<|/ref|><|det|>[[1,2,3,4]]<|/det|>\nbody"
    page = parse_page(raw)
    assert [b.content for b in page.blocks] == ["preface", "body"]
    assert {"text_outside_block", "stray_tag"} <= set(page.flags)


def test_table_entities_br_and_spans() -> None:
    table = parse_table(
        "<table><thead><tr><th>a &amp; b</th><th>c</th></tr></thead>"
        '<tr><td colspan="2">x<br>y</td></tr><tr><td>1</td><td>&lt;2&gt;</td></tr></table>'
    )
    assert table.header_rows == 1 and table.cells[0].text == "a & b"
    assert table.cells[2].text == "x\ny" and table.cells[2].col_span == 2
    assert table.grid()[2] == ["1", "<2>"] and table.flags == []


def test_split_pages_on_the_released_separator() -> None:
    raw = "a\n\n<--- Page Split --->\nb\n\n<--- Page Split --->\n"
    assert split_pages(raw) == ["a", "b"]


def test_missing_characters_detects_a_loss() -> None:
    raw, page = load("001")
    page.blocks[3].content = page.blocks[3].content[:-5]
    assert missing_characters(raw, page) != ""


def test_locate_output_gives_boxes_of_the_phrase() -> None:
    raw = "<|ref|>the cat<|/ref|><|det|>[[10, 20, 30, 40], [50, 60, 70, 80]]<|/det|>"
    page = parse_page(raw, prompt="<image>\nLocate <|ref|>the cat<|/ref|> in the image.")
    (block,) = page.blocks
    assert (block.type, block.label, block.content) == (BlockType.UNKNOWN, "the cat", "")
    assert len(block.boxes) == 2 and page.flags == []


def test_output_cut_inside_a_formula_or_cell_is_truncated() -> None:
    head = "<|ref|>equation<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n"
    assert "truncated" in parse_page(head + "\\[ x = ").flags
    assert "truncated" not in parse_page(head + "\\[ x = 1 \\]").flags
    cell = "<|ref|>table<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n<table><tr><td>1</td><td>2"
    page = parse_page(cell)
    assert "truncated" in page.flags and page.blocks[0].table.cells[-1].text == "2"


def test_plain_text_headings_tables_and_loops() -> None:
    raw = "## Intro\n\nSome text.\n\n<table><tr><td>a</td></tr></table>\n\n" + "la la " * 80
    page = parse_page(raw, prompt="<image>\nFree OCR.")
    assert [b.type.value for b in page.blocks] == ["section_heading", "text", "table", "text"]
    assert page.blocks[0].heading_level == 2 and page.blocks[2].table.num_cols == 1
    assert "repetition" in page.blocks[3].flags and "repetition" in page.flags


def test_parse_page_fills_page_fields() -> None:
    page = parse_page("hi", number=7, image_size=(640, 480), prompt="p")
    assert (page.number, page.image_width, page.image_height, page.prompt) == (7, 640, 480, "p")
    assert page.raw_output == "hi" and page.status.value == "ok"
    assert parse_page("").flags == ["empty_output"]


def test_flags_of_a_det_with_no_content_reach_the_page() -> None:
    page = parse_page("<|det|>" + "[0 " * 200)
    assert {"stray_det", "repetition", "truncated", "empty_output"} <= set(page.flags)
