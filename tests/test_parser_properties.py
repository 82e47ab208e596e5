"""Property tests: any string parses, no content character is lost, boxes stay on the grid."""

from __future__ import annotations

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
