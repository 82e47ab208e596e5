"""The loop rule: only repeated units are cut, one whole copy stays, open delimiters close.

Targeted cases from issue #10 (text, table rows, cells in a row) and property tests on
generated inputs; `test_parser_properties.py` holds the page-level properties.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dsocr_connectors.parsing import parse_page, parse_table
from dsocr_connectors.parsing.delimiters import closers, open_delimiters
from dsocr_connectors.parsing.repetition import (
    MIN_EXACT_CHARS,
    MIN_REPEATS,
    exact_loop,
    near_loop,
    text_loop,
    trailing_cycle,
)

HEAD = "<|ref|>{label}<|/ref|><|det|>[[10, 20, 900, 80]]<|/det|>\n"
SETTINGS = settings(max_examples=150, deadline=None)


def block(text: str, label: str = "text") -> str:
    return HEAD.format(label=label) + text + "\n\n"


def only_block(raw: str):
    (found,) = parse_page(raw).blocks
    return found


def test_distinct_list_items_are_not_a_loop() -> None:
    items = "2 [4,1,0], 3 [4,0,1], 4 [3,2,0], 5 [3,1,1], 6 [3,0,2], 7 [2,3,0], 8 [2,2,1], " \
        "9 [2,1,2], 10 [2,0,3], 11 [1,4,0], 12 [1,3,1], 13 [1,2,2], 14 [1,1,3], 15 [1,0,4], " \
        "16 [0,5,0], 17 [0,4,1], 18 [0,3,2], 19 [0,2,3], 20 [0,1,4], 21 [0,0,5]"
    page = parse_page(block("The states are " + items + "."))
    assert "repetition" not in page.flags and page.blocks[0].repairs == []
    assert items in page.to_markdown()


def test_four_similar_answer_options_are_not_a_loop() -> None:
    options = "\n".join(
        f"{letter}. \\(4\\mathrm{{CuSO}}_4 + {n}\\mathrm{{H}}_2\\mathrm{{O}} \\rightarrow "
        f"4\\mathrm{{CuSO}}_4 \\cdot {n}\\mathrm{{H}}_2\\mathrm{{O}}\\)"
        for letter, n in zip("ABCD", (1, 3, 5, 7))
    )
    page = parse_page(block(options))
    assert "repetition" not in page.flags
    assert page.to_markdown() == options


def test_loop_inside_math_keeps_one_whole_unit_and_closes_the_math() -> None:
    text = "3. \\(0.8 = \\frac{4}{5}" + " = \\frac{16}{20}" * 40
    found = only_block(block(text))
    (repair,) = found.repairs
    assert repair.kind == "loop_cut" and repair.unit == " = \\frac{16}{20}"
    assert found.content[: repair.offset] == "3. \\(0.8 = \\frac{4}{5} = \\frac{16}{20}"
    assert repair.text == "\\)" and repair.copies == 39
    markdown = parse_page(block(text)).to_markdown(loop_marker=False)
    assert markdown == "3. \\(0.8 = \\frac{4}{5} = \\frac{16}{20}\\)"


def test_cut_lands_on_a_separator_not_inside_a_word() -> None:
    loop = exact_loop("辽宁省彰武县、" + "肇源县、" * 20)
    assert loop is not None and loop.unit == "肇源县、"
    assert ("辽宁省彰武县、" + "肇源县、" * 20)[: loop.offset].endswith("肇源县、")


def test_near_loop_perturbed_by_the_ngram_rule_keeps_every_variant() -> None:
    rng = random.Random(3)
    units = ["河南省作协主席、"] * 6 + ["河南省作协副主席、", "河南省作协会主席、"]
    text = "曾任" + "".join(rng.choice(units) for _ in range(300))
    loop = near_loop(text)
    assert loop is not None and not loop.exact
    kept = text[: loop.offset]
    assert "副主席" in kept and "会主席" in kept  # every piece that occurs at all is kept
    pieces = {text[i : i + 6] for i in range(loop.offset, len(text) - 5)}
    assert all(piece in kept for piece in pieces)


def test_counting_is_not_a_loop() -> None:
    counting = "Werte: " + " ".join(f"{i} 0 0 0" for i in range(300, 400))
    assert text_loop(counting) is None


def test_trailing_cycle_of_several_items() -> None:
    assert trailing_cycle(list("xyzababababab"), 5, 4).start == 5
    assert trailing_cycle(list("xyzabababab"), 5, 4) is None
    assert trailing_cycle(list("abcabcabcabcabc"), 5, 4).period == 3


def test_cycle_of_rows_in_an_open_table_is_cut_to_one_copy() -> None:
    head = "".join(f"<tr><td>r{i}</td><td>{i * 7}</td></tr>" for i in range(4))
    cycle = "<tr><td>a</td><td>b</td></tr><tr><td>c</td><td></td></tr>" * 12
    page = parse_page(block(f"<table>{head}{cycle}<tr><td>a", "table"))
    table_block = page.blocks[0]
    (repair,) = [r for r in table_block.repairs if r.kind == "rows_cut"]
    assert repair.offset == 6 and repair.copies == 11  # rows 4-5 are the copy kept
    assert "loop_start_row:6" in table_block.table.flags
    markdown = page.to_markdown(loop_marker=False)
    assert markdown.count("<tr>") == 6 and markdown.count("<td>a</td>") == 1


def test_equal_rows_of_a_closed_table_stay() -> None:
    rows = "<tr><td></td><td></td></tr>" * 8  # a blank form: few equal rows are legitimate
    page = parse_page(block(f"<table><tr><td>Name</td><td>Date</td></tr>{rows}</table>", "table"))
    assert "repetition" not in page.flags
    assert page.to_markdown().count("<tr>") == 9


def test_header_row_of_700_cells_is_cut_to_one_copy() -> None:
    header = "<tr><td>Year</td><td>Sales</td>" + "<td>-</td>" * 700 + "</tr>"
    body = "".join(f"<tr><td>{2000 + i}</td><td>{i * 13}</td></tr>" for i in range(5))
    page = parse_page(block(f"<table>{header}{body}</table>", "table"))
    table_block = page.blocks[0]
    (repair,) = table_block.repairs
    assert (repair.kind, repair.row, repair.offset, repair.copies) == ("cells_cut", 0, 3, 699)
    markdown = page.to_markdown(loop_marker=False)
    assert markdown.count("<th>-</th>") == 1 and "2004" in markdown


def test_table_rows_with_other_numbers_are_different_rows() -> None:
    rows = "".join(f"<tr><td>item</td><td>{i}</td></tr>" for i in range(40))
    page = parse_page(block(f"<table>{rows}<tr><td>item", "table"))
    assert not [r for r in page.blocks[0].repairs if r.kind == "rows_cut"]
    assert parse_table(f"<table>{rows}</table>").num_rows == 40


# --- properties --------------------------------------------------------------------------

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
BALANCED_TOKENS = ["x", "y", " ", ", ", "、", "\\frac{1}{2}", "\\(a\\)", "<b>b</b>", "{z}", "=", "+"]


@SETTINGS
@given(st.lists(st.tuples(WORDS, st.integers(0, 999), st.integers(0, 9)), min_size=3, max_size=40,
                unique_by=lambda item: item[1]))
def test_random_distinct_list_items_are_never_cut(items) -> None:
    """Items that differ in a number are different content, however alike they look."""
    text = "; ".join(f"{word} {number} [{digit},{digit}]" for word, number, digit in items)
    page = parse_page(block(text))
    assert page.blocks[0].repairs == []
    assert page.to_markdown() == text


@SETTINGS
@given(
    st.lists(st.sampled_from(BALANCED_TOKENS), min_size=1, max_size=8),
    st.lists(st.sampled_from(BALANCED_TOKENS), min_size=1, max_size=6),
    st.integers(0, 40),
)
def test_exact_copies_are_cut_to_one_whole_balanced_copy(prefix, unit, extra) -> None:
    head, one = "Start. " + "".join(prefix), "".join(unit)
    if not one.strip():
        return  # whitespace at the end of a block is not text
    # one more than the minimum: a unit ending in a space loses it at the end of the block
    copies = max(MIN_REPEATS, -(-MIN_EXACT_CHARS // len(one)), -(-100 // len(one))) + 1 + extra
    text = head + one * copies
    loop = exact_loop(text)
    assert loop is not None and text_loop(text).offset <= loop.offset
    period = len(loop.unit)
    assert len(one) % period == 0  # the unit found is the unit written (or a divisor of it)
    cut = text[loop.offset :]
    # only copies are cut: each cut character repeats the one a unit earlier, which is kept
    assert all(text[loop.offset + i] == text[loop.offset + i - period] for i in range(len(cut)))
    assert loop.unit in text[: loop.offset]
    # balanced prefix and unit: the cut falls where nothing is open
    assert open_delimiters(text[: loop.offset]) == [] and loop.closing(text) == ""


@SETTINGS
@given(st.sampled_from(["\\(", "\\[", "{", "<sup>", "$x"]), st.lists(WORDS, min_size=1, max_size=4))
def test_a_cut_inside_open_math_or_tags_is_closed(opener, words) -> None:
    unit = " " + " ".join(words)
    text = "Intro " + opener + unit * max(MIN_REPEATS, 100 // len(unit) + 1)
    loop = text_loop(text)
    assert loop is not None
    assert open_delimiters(text[: loop.offset] + loop.closing(text)) == []
    assert closers(text[: loop.offset]) == loop.closing(text) != ""
