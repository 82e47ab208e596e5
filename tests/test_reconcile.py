"""A model-read page checked against the PDF text layer: fixes, flags, markup, geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pymupdf
import pytest

import loaders
from core_model.engines.interface import PageResult
from dsocr_connectors.document import BlockType, Document, Page
from dsocr_connectors.parsing import parse_page
from dsocr_connectors.pipeline import Converter
from dsocr_connectors.reconcile import compare, reconcile_page
from dsocr_connectors.reconcile.markup import visible_text
from loaders.page import TextLayer
from tests import layer_outputs, layer_samples

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
RAW = Path(__file__).parent / "data" / "raw_outputs"


def read(raw: str, loaded) -> Page:
    """What the pipeline makes of a model output for this loaded page."""
    page = parse_page(raw, number=loaded.number, image_size=loaded.image.size, prompt=PROMPT)
    return page.model_copy(update={"width_pt": loaded.width_pt, "height_pt": loaded.height_pt,
                                   "engine": "native"})


@pytest.fixture(scope="module")
def invoice():
    sample = layer_samples.invoice()
    return sample, next(loaders.iter_pages(sample.data, dpi=36))


@pytest.fixture(scope="module")
def paper():
    sample = layer_samples.tex_paper()
    return sample, list(loaders.iter_pages(sample.data, dpi=36))


# -- one block's text ------------------------------------------------------------------------

def test_ocr_confusions_take_the_layers_characters_and_markup_stays():
    result = compare("## The modem **cafe** in Zurich", "The modern café in Zürich",
                     is_heading=True)
    assert result.content == "## The modern **café** in Zürich"
    assert (result.status, result.num_corrected) == ("corrected", 4)
    assert result.corrections == [("modem", "modern"), ("cafe", "café"), ("Zurich", "Zürich")]
    assert compare("Price <b>is</b> 1,48O.80 &amp; tax", "Price is 1,480.80 & tax").content \
        == "Price <b>is</b> 1,480.80 &amp; tax"


def test_tables_are_corrected_cell_by_cell_and_stay_html():
    html = "<table><tr><td>Item</td><td>Price</td></tr><tr><td>A&amp;B</td><td>149.0O</td>" \
           "</tr></table>"
    result = compare(html, "Item Price A&B 149.00", is_html=True)
    assert result.content == html.replace("149.0O", "149.00")
    assert result.status == "corrected"
    moved = compare("<table><tr><td>Region</td><td>Population</td></tr></table>",
                    "Population Region", is_html=True)  # a spanning cell read in another order
    assert moved.status == "confirmed" and moved.num_confirmed == 16


def test_latex_and_code_comments_are_not_touched():
    content = "where \\(x_{i}\\) is the modem value"
    result = compare(content, "where xi is the modern value")
    assert result.content == "where \\(x_{i}\\) is the modern value"
    code = compare("# Run it with make\nx = 1", "# Run it with make x = 1")  # a text block
    assert (code.status, code.num_chars, code.num_confirmed) == ("confirmed", 17, 17)  # "#" too


def test_skipped_and_hallucinated_text_is_flagged_and_kept():
    skipped = compare("The first line. The third line.",
                      "The first line. The second line the model left out. The third line.")
    assert skipped.status == "contradicted"
    assert "second line the model left out." in skipped.missing_text[0]
    assert skipped.content == "The first line. The third line."  # nothing inserted
    added = compare("The first line. A sentence that is on no page. The second line.",
                    "The first line. The second line.")
    assert added.status == "contradicted"
    assert added.unmatched_text == ["A sentence that is on no page."]
    assert "A sentence that is on no page." in added.content  # nothing lost


def test_text_that_barely_agrees_is_not_corrected():
    result = compare("Completely different words here", "Nothing alike at all in this box")
    assert result.status == "contradicted" and result.num_corrected == 0
    assert result.content == "Completely different words here"


def test_real_model_outputs_compare_equal_with_their_own_text():
    """Real outputs' markup (LaTeX, tables, multi-box blocks, <center>) is read right: each
    block compared with its own visible text is confirmed and unchanged."""
    for name in ("001_odb-en-paper-maxwell-equations.txt",
                 "002_odb-en-paper-table-image-multibox.txt",
                 "025_odb-en-form-many-tables.txt", "052_docling-doclaynet-title-page.txt"):
        page = parse_page((RAW / name).read_text(), number=1, image_size=(1000, 1400),
                          prompt=PROMPT)
        for block in page.blocks:
            heading = block.type in (BlockType.TITLE, BlockType.SECTION_HEADING)
            text = visible_text(block.content, heading_marks=heading).text
            own = " ".join(text.replace("\x1f", " ").replace("\x1e", " ").split())
            result = compare(block.content, own, is_html=block.table is not None,
                             is_heading=heading)
            assert result.content == block.content, (name, block.content)
            assert result.num_corrected == 0 and not result.unmatched_text


# -- a page ----------------------------------------------------------------------------------

def test_an_invoice_read_with_errors_comes_out_right(invoice):
    sample, loaded = invoice
    raw, _ = layer_outputs.model_output(sample, 1, errors=False)
    errors = {"<td>149.00</td>": "<td>149.0O</td>", "Zürich area": "Zurich area",
              "Invoice no.": "lnvoice no.", "Müller & Söhne": "Muller & Söhne",
              "Payment is due": "Payrnent is due"}
    for right, wrong in errors.items():
        raw = raw.replace(right, wrong)
    checked = reconcile_page(read(raw, loaded), loaded.text_layer)
    markdown = checked.to_markdown()
    assert not any(wrong in markdown for wrong in errors.values())
    assert "Invoice no." in markdown and "Müller &amp; Söhne" not in markdown
    assert "Müller & Söhne" in markdown and "Payment is due" in markdown
    (table,) = [b for b in checked.blocks if b.table is not None]
    assert table.text_check.status == "corrected" and table.text_check.num_corrected == 2
    assert ["Ergonomic office chair, black", "2", "149.00", "298.00"] in table.table.grid()
    assert ["Delivery (Zürich area)", "1", "35.00", "35.00"] in table.table.grid()
    assert checked.text_check.num_corrected == 5 and checked.text_check.num_outside == 0  # "m" is one
    assert set(checked.text_check.num_blocks) == {"confirmed", "corrected"}
    assert 0.98 <= checked.text_agreement < 1.0


def test_reconcile_page_leaves_its_input_alone_unless_asked(invoice):
    sample, loaded = invoice
    raw, _ = layer_outputs.model_output(sample, 1, errors=False)
    page = read(raw.replace("Payment is due", "Payrnent is due"), loaded)
    before = page.model_dump()
    copied = reconcile_page(page, loaded.text_layer)
    assert "Payment is due" in copied.to_markdown()  # the copy was corrected
    assert page.model_dump() == before  # the page given was not
    same = reconcile_page(page, loaded.text_layer, in_place=True)
    assert same is page
    assert page.model_dump(exclude={"timings"}) == copied.model_dump(exclude={"timings"})


def test_confirmed_blocks_bring_the_layers_word_boxes(invoice):
    sample, loaded = invoice
    raw, _ = layer_outputs.model_output(sample, 1, errors=False)
    checked = reconcile_page(read(raw, loaded), loaded.text_layer)
    assert checked.text_agreement == 1.0
    assert set(checked.text_check.num_blocks) == {"confirmed"}
    title = checked.blocks[0]
    assert [w.text for w in title.text_check.words] == ["Northwind", "Supplies", "Ltd."]
    x0, y0, x1, y1 = title.boxes[0].to_points(loaded.width_pt, loaded.height_pt)
    for word in title.text_check.words:
        assert x0 - 3 <= word.bbox[0] < word.bbox[2] <= x1 + 3
        assert y0 - 3 <= word.bbox[1] < word.bbox[3] <= y1 + 3


def test_skips_and_hallucinations_are_flagged_on_blocks_and_page(paper):
    sample, pages = paper
    raw, injected = layer_outputs.model_output(sample, 1, seed=2)
    checked = reconcile_page(read(raw, pages[0]), pages[0].text_layer)
    skipped = checked.blocks[injected.skipped[0]]
    assert "text_layer_missing" in skipped.flags
    assert injected.skipped[1] in " ".join(skipped.text_check.missing_text)
    added = checked.blocks[injected.hallucinated]
    assert "text_layer_unmatched" in added.flags
    assert added.text_check.unmatched_text == [layer_outputs.HALLUCINATION]
    assert layer_outputs.HALLUCINATION in added.content
    assert "text_layer_contradicted" in checked.flags


def test_text_outside_every_box_and_blocks_without_layer_text(paper):
    sample, pages = paper
    raw, _ = layer_outputs.model_output(sample, 2, errors=False)
    first, rest = raw.split("\n\n", 1)  # the model left out the first heading
    raw = rest + "\n\n<|ref|>text<|/ref|><|det|>[[100, 600, 900, 700]]<|/det|>\nA caption\n" \
        "\n<|ref|>equation<|/ref|><|det|>[[100, 720, 900, 760]]<|/det|>\n\\[E = mc^2\\]\n"
    checked = reconcile_page(read(raw, pages[1]), pages[1].text_layer)
    assert checked.text_check.outside_text == ["2 Related Work"]
    assert "text_layer_outside_blocks" in checked.flags
    caption, equation = checked.blocks[-2:]
    assert (caption.text_check.status, caption.text_check.reason) == (
        "model_only", "no text-layer words in the box")
    assert equation.text_check.status == "model_only" and equation.content == "\\[E = mc^2\\]"
    assert checked.text_agreement < 1.0


def test_an_unusable_layer_is_not_used_and_the_page_says_why(invoice):
    sample, loaded = invoice
    raw, _ = layer_outputs.model_output(sample, 1, errors=False)
    layer = TextLayer(words=loaded.text_layer.words, is_usable=False,
                      unusable_reason="38% of the text layer is U+FFFD replacement characters")
    checked = reconcile_page(read(raw, loaded), layer)
    assert checked.text_check.status == "not_checked"
    assert checked.text_check.reason == ("text layer not usable: 38% of the text layer is "
                                         "U+FFFD replacement characters")
    assert all(b.text_check is None for b in checked.blocks)
    plain = read(layer_samples.invoice().pages[0][0].markdown, loaded)  # "Free OCR.": no boxes
    assert reconcile_page(plain, loaded.text_layer).text_check.reason.startswith(
        "no block boxes")


@pytest.mark.parametrize("change", ["rotate", "crop"])
def test_boxes_meet_the_words_on_rotated_and_cropped_pages(change):
    """The model's boxes are on the rendered image; the words, on the displayed page. Both
    frames agree when the page is turned (/Rotate) or cropped (/CropBox)."""
    doc = pymupdf.open()
    page = doc.new_page(width=400, height=300)
    text = "Rotated and cropped pages still line up with the model's boxes."
    page.insert_textbox(pymupdf.Rect(150, 120, 380, 200), text, fontsize=11)
    if change == "rotate":
        page.set_rotation(90)
    else:
        page.set_cropbox(pymupdf.Rect(100, 80, 400, 300))
    loaded = next(loaders.iter_pages(doc.tobytes(), dpi=72))
    ink = np.argwhere(np.asarray(loaded.image.convert("L")) < 128)  # what the model sees
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0)
    w, h = loaded.image.size
    box = [round(x0 / w * 999), round(y0 / h * 999), round(x1 / w * 999), round(y1 / h * 999)]
    raw = f"<|ref|>text<|/ref|><|det|>[[{', '.join(map(str, box))}]]<|/det|>\n{text}\n"
    checked = reconcile_page(read(raw, loaded), loaded.text_layer)
    assert checked.blocks[0].text_check.status == "confirmed"
    assert checked.text_agreement == 1.0


def test_the_record_survives_a_json_round_trip(invoice):
    sample, loaded = invoice
    raw, _ = layer_outputs.model_output(sample, 1, seed=3)
    checked = reconcile_page(read(raw, loaded), loaded.text_layer)
    doc = Document(source="invoice.pdf", pages=[checked])
    assert Document.from_json(doc.to_json()) == doc


# -- the pipeline ----------------------------------------------------------------------------

class TruthEngine:
    """Answers each page with the next of `outputs` (pages come in order)."""

    name = "truth"

    def __init__(self, outputs: list[str]):
        self.outputs = list(outputs)
        self.num_pages = 0

    def generate(self, requests, *, on_token=None):
        self.num_pages += len(requests)
        return [PageResult(text=self.outputs.pop(0), finish_reason="eos", key=r.key,
                           num_vision_tokens=100, num_output_tokens=10) for r in requests]


def test_with_a_model_every_page_is_read_by_it_and_checked(tmp_path):
    sample = layer_samples.report()
    path = tmp_path / "report.pdf"
    path.write_bytes(sample.data)
    outputs = [layer_outputs.model_output(sample, n, seed=n)[0] for n in (1, 2, 3)]
    engine = TruthEngine(outputs)
    doc = Converter(engine=engine, dpi=36).convert(path)
    assert engine.num_pages == 3 and doc.metadata["ocr"] == "always"
    assert [p.engine for p in doc.pages] == ["truth"] * 3
    assert all(p.text_check.status == "checked" for p in doc.pages)
    assert all(p.text_agreement is not None and p.text_agreement > 0.7 for p in doc.pages)
    fast = Converter(engine=TruthEngine([]), ocr="auto", dpi=36).convert(path)
    assert [p.engine for p in fast.pages] == ["text-layer"] * 3  # the explicit fast mode
    assert all(p.text_check is None for p in fast.pages)
