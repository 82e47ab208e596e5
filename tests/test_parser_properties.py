"""Property tests: any string parses, no content character is lost, boxes stay on the grid;
and per class of issue #10 (generated inputs): tag parts never reach the Markdown, huge spans
are capped fast, several tables in a block stay several, equation numbers, row cycles."""

from __future__ import annotations

import re
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsocr_connectors.parsing import EOS_TEXT, missing_characters, parse_page

FRAGMENTS = [
    "<|ref|>",
    "<|/ref|>",
    "<|det|>",
    "<|/det|>",
    "<|grounding|>",
    EOS_TEXT,
    "text",
    "table",
    "table_caption",
    "image",
    "sub_title",
    "title",
    "equation",
    "table C1",
    "[[",
    "]]",
    "[[10, 20, 300, 400]]",
    "[[1000, -5, 3, 2], [0, 0, 0, 0]]",
    "[[902, 940,",
    ", ",
    "12",
    "0.5ex]",
    "\n",
    "\n\n",
    "\r\n",
    " ",
    "# ",
    "## Heading",
    "<table>",
    "</table>",
    "<tr>",
    "</tr>",
    "<td>",
    "</td>",
    '<td colspan="2">',
    '<td rowspan="x">',
    "<th>",
    "<br>",
    "&amp;",
    "&lt;",
    "<center>",
    "</center>",
    "\\[ x^2 \\]",
    "\\(",
    "abc",
    "肇源县、",
    "Привет",
    "<",
    "|",
    ">",
]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROMPTS = st.sampled_from(
    [None, "<image>\n<|grounding|>OCR this image.", "<image>\nFree OCR.", "Locate <|ref|>x<|/ref|>"]
)


def check(raw: str, prompt: str | None = None) -> None:
    page = parse_page(raw, prompt=prompt)
    assert page.errors == []
    assert missing_characters(raw, page) == ""
    for block in page.blocks:
        for box in block.boxes:
            assert 0 <= box.x1 <= box.x2 <= 999 and 0 <= box.y1 <= box.y2 <= 999
    page.model_dump_json()  # the page always serialises


@SETTINGS
@given(st.text(), PROMPTS)
def test_random_text(raw: str, prompt: str | None) -> None:
    check(raw, prompt)


@SETTINGS
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60), PROMPTS)
def test_grammar_fragments(parts: list[str], prompt: str | None) -> None:
    check("".join(parts), prompt)


@SETTINGS
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40))
def test_adversarial_tag_soup(parts: list[str]) -> None:
    check("".join(parts))


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["text", "table", "image", "title", "odd label"]),
            st.lists(st.integers(-50, 1100), min_size=4, max_size=4),
            st.text(max_size=30),
        ),
        max_size=12,
    ),
    st.integers(0, 400),
)
def test_well_formed_blocks_cut_anywhere(blocks, cut: int) -> None:
    raw = "".join(
        f"<|ref|>{label}<|/ref|><|det|>[[{', '.join(map(str, box))}]]<|/det|>\n{text}\n\n"
        for label, box, text in blocks
    )
    check(raw[:cut])
    check(raw)


# --- issue #10: what reaches the Markdown -----------------------------------------------

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEAD = "<|ref|>{label}<|/ref|><|det|>[[{box}]]<|/det|>\n"
BOXES = st.lists(st.integers(0, 999), min_size=4, max_size=4).map(lambda b: ", ".join(map(str, b)))
LABELS = st.sampled_from(["text", "title", "equation", "table", "image", "table_caption"])
PLAIN_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü肇源县河南省", min_size=1, max_size=10)
COORDS_RE = re.compile(r"\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*\d+")
TAG_RE = re.compile(r"<\|/?(?:ref|det|grounding)\|>")


def soup_piece(label: str, box: str, words: list[str], how: int) -> str:
    """One block, written right or with a tag part missing or misplaced (`how`)."""
    text = " ".join(words)
    return [
        f"<|ref|>{label}<|/ref|><|det|>[[{box}]]<|/det|>\n{text}\n\n",
        f"<|ref|>{label}<|/ref|>[[{box}]]<|/det|>\n{text}\n\n",  # no <|det|>
        f"<|ref|>{label}<|/ref|>[{box}]]<|/det|>\n{text}\n\n",  # no <|det|>, one bracket
        f"{label}<|/ref|><|det|>[[{box}]]<|/det|>\n{text}\n\n",  # no <|ref|>
        f"<|ref|>{label}<|/ref|>\n[[{box}]]<|/det|>\n{text}\n\n",  # coordinates before <|/det|>
        f"<|ref|>{label}<|/ref|><|det|>[[{box}]]\n{text}\n\n",  # no <|/det|>
        f"<|ref|>{label}<|/ref|><|det|>{text}<|/det|>\n\n",  # a det holding text
        f"<|det|>[[{box}]]<|/det|>\n{text}\n\n",  # no ref at all
    ][how]


@FEW
@given(st.lists(st.tuples(LABELS, BOXES, st.lists(PLAIN_WORDS, min_size=1, max_size=6),
                          st.integers(0, 7)), min_size=1, max_size=8), st.integers(0, 2000))
def test_tag_soup_never_leaks_tag_parts_and_keeps_every_word(pieces, cut: int) -> None:
    raw = "".join(soup_piece(*piece) for piece in pieces)
    for text in (raw, raw[:cut]):
        page = parse_page(text)
        markdown = page.to_markdown(loop_marker=False)
        assert not TAG_RE.search(markdown) and not COORDS_RE.search(markdown), markdown
        assert missing_characters(text, page) == ""
    markdown = parse_page(raw).to_markdown(loop_marker=False)
    for _, _, words, _ in pieces:
        for word in words:  # words repeat at most a few times: no loop, nothing cut
            assert word in markdown


SPANS = st.one_of(st.integers(1, 4), st.integers(10**5, 10**6))


@FEW
@given(st.lists(st.lists(st.tuples(SPANS, SPANS, PLAIN_WORDS), min_size=1, max_size=10),
                min_size=1, max_size=25))
def test_tables_with_huge_spans_parse_fast_and_capped(rows) -> None:
    html = "<table>" + "".join(
        "<tr>" + "".join(f'<td rowspan="{r}" colspan="{c}">{w}</td>' for r, c, w in row) + "</tr>"
        for row in rows
    ) + "</table>"
    start = time.perf_counter()
    page = parse_page(HEAD.format(label="table", box="1, 2, 3, 4") + html)
    markdown = page.to_markdown(tables="pipe")
    assert time.perf_counter() - start < 1.0
    table = page.blocks[0].table
    widest = max(map(len, rows))
    assert table.num_rows == len(rows)
    assert table.num_cols <= sum(map(len, rows)) * max(64, widest * widest)
    if any(r >= 10**5 or c >= 10**5 for row in rows for r, c, _ in row):
        assert "span_clamped" in table.flags
    assert all(w in markdown for row in rows for _, _, w in row)


@FEW
@given(st.lists(st.tuples(st.lists(PLAIN_WORDS, min_size=1, max_size=3),
                          st.lists(PLAIN_WORDS, min_size=0, max_size=3)), min_size=1, max_size=5))
def test_several_tables_in_one_block_become_several_tables(tables) -> None:
    content = "".join(
        "<table>" + "".join(f"<tr><td>{c}</td></tr>" for c in cells) + "</table>"
        + ("\n" + " ".join(between) + "\n" if between else "<br>")
        for cells, between in tables
    )
    page = parse_page(HEAD.format(label="table", box="1, 2, 3, 4") + content)
    found = [b.table for b in page.blocks if b.table is not None]
    assert [t.num_rows for t in found] == [len(cells) for cells, _ in tables]
    markdown = page.to_markdown()
    assert all(w in markdown for cells, between in tables for w in cells + between)


NUMBERS = st.from_regex(r"\A(?:[1-9][0-9]{0,2}(?:\.[1-9][0-9]?)?[a-c]?|[A-E]\.[1-9])\Z")


@FEW
@given(st.lists(PLAIN_WORDS, min_size=1, max_size=5), NUMBERS,
       st.sampled_from(["\\quad ({n})", "\\qquad ({n})", "\\tag{{{n}}}", "~({n})", "\\hfill ({n})"]))
def test_equation_numbers_are_read_and_rendered_as_tags(words, number, written) -> None:
    latex = " + ".join(f"\\mathrm{{{w}}}" for w in words) + " = 1"
    page = parse_page(HEAD.format(label="equation", box="1, 2, 3, 4")
                      + f"\\[ {latex} {written.format(n=number)} \\]")
    equation = page.blocks[0].equation
    assert (equation.latex, equation.number) == (latex, number)
    assert page.to_markdown() == f"$$\n{latex} \\tag{{{number}}}\n$$"


@FEW
@given(
    st.lists(st.lists(PLAIN_WORDS, min_size=2, max_size=2), min_size=0, max_size=6),
    st.lists(st.lists(PLAIN_WORDS, min_size=2, max_size=2), min_size=1, max_size=4),
    st.integers(5, 30),
)
def test_a_cycle_of_rows_in_an_open_table_keeps_one_copy(head, cycle, copies) -> None:
    def row(cells: list[str]) -> str:
        return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    rows = [*head, *cycle * copies]
    page = parse_page(HEAD.format(label="table", box="1, 2, 3, 4")
                      + "<table>" + "".join(map(row, rows)) + "<tr><td>x")
    table_block = page.blocks[0]
    (repair,) = [r for r in table_block.repairs if r.kind == "rows_cut"]
    kept, period = repair.offset, repair.unit.count("\n") + 1
    assert kept <= len(head) + len(cycle)  # at most one copy of the cycle is kept
    assert all(rows[i] == rows[i - period] for i in range(kept, len(rows)))  # only copies cut
    texts = page.to_markdown(loop_marker=False)
    assert all(c in texts for r in head + cycle for c in r)  # every distinct row survives
