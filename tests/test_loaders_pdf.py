"""PDF loading: rendering, rotation, text layer, tables, damaged and encrypted files, laziness.

Every PDF is made here with pymupdf; damaged ones by cutting or flipping bytes.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pymupdf
import pytest

from loaders import LoaderError, count_pages, iter_pages, iter_pdf_pages
from loaders.text_layer import is_usable_text

A4 = (595, 842)
BODY = "The quick brown fox jumps over the lazy dog."


def make_pdf(num_pages: int = 3, *, rotate: int = 0, size=A4, labels: bool = False,
             compress: bool = True) -> bytes:
    doc = pymupdf.open()
    for number in range(1, num_pages + 1):
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 72), f"Heading {number}", fontsize=16, fontname="hebo")
        page.insert_text((72, 100), f"{BODY} Page {number}.", fontsize=11)
        if rotate:
            page.set_rotation(rotate)
    if labels:
        doc.set_page_labels([{"startpage": 0, "prefix": "A-", "style": "D", "firstpagenum": 1}])
    return doc.tobytes(garbage=0, deflate=compress)


def pages_of(data: bytes, **kwargs):
    return list(iter_pages(data, name="test.pdf", **kwargs))


def test_multipage_renders_each_page_at_dpi_with_its_text():
    pages = pages_of(make_pdf(3, labels=True))
    assert [p.number for p in pages] == [1, 2, 3]
    for page in pages:
        assert page.error is None and page.total_pages == 3
        assert page.image.mode == "RGB" and page.image.size == (1190, 1684)  # 144 dpi = 2x pt
        assert (page.width_pt, page.height_pt, page.rotation) == (595, 842, 0)
        assert f"Page {page.number}." in page.text_layer.text
        assert page.text_layer.is_usable
    assert [p.label for p in pages] == ["A-1", "A-2", "A-3"]
    heading = pages[0].text_layer.spans[0]
    assert heading.text == "Heading 1" and heading.is_bold and heading.size == 16
    assert not pages[0].text_layer.spans[1].is_bold
    assert pages_of(make_pdf(1), dpi=72)[0].image.size == A4


def test_span_boxes_line_up_with_the_rendered_image():
    page = pages_of(make_pdf(1))[0]
    ink = np.asarray(page.image.convert("L")) < 128
    for span in page.text_layer.spans:
        x0, y0, x1, y1 = (round(v * 2) for v in span.bbox)  # points -> pixels at 144 dpi
        assert ink[y0:y1, x0:x1].mean() > 0.05  # the glyphs are inside the box
    assert ink[:100].sum() == 0  # and nothing is drawn above the heading


def test_rotated_page_reports_rotation_and_displayed_size_and_boxes():
    page = pages_of(make_pdf(1, rotate=90))[0]
    assert page.rotation == 90
    assert (page.width_pt, page.height_pt) == (842, 595)
    assert page.image.size == (1684, 1190)
    ink = np.asarray(page.image.convert("L")) < 128
    heading = page.text_layer.spans[0]
    x0, y0, x1, y1 = (round(v * 2) for v in heading.bbox)
    assert x1 - x0 < y1 - y0  # turned a quarter: the line now runs down the page
    assert ink[y0:y1, x0:x1].mean() > 0.05
    assert x0 > 1684 / 2  # text at the unrotated top-left lands on the right


def test_page_selection_and_out_of_range_pages_are_reported():
    data = make_pdf(5)
    assert [p.number for p in pages_of(data, pages="1-2,4")] == [1, 2, 4]
    assert [p.number for p in pages_of(data, pages="4-")] == [4, 5]
    assert [p.number for p in pages_of(data, pages=range(2, 4))] == [2, 3]
    assert [p.number for p in pages_of(data, pages=[5, 1])] == [5, 1]
    beyond = pages_of(data, pages="5-7")
    assert [p.number for p in beyond] == [5, 6, 7]
    assert beyond[0].error is None
    assert "test.pdf, page 7" in str(beyond[2].error) and "has 5" in str(beyond[2].error)
    with pytest.raises(ValueError, match="bad page range"):
        pages_of(data, pages="3-1")
    with pytest.raises(ValueError, match="start at 1"):
        pages_of(data, pages=[0])


def test_encrypted_pdf_needs_its_password():
    doc = pymupdf.open(stream=make_pdf(2))
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="secret")
    [locked] = pages_of(data)
    assert locked.image is None and locked.number == 1 and locked.error.page is None
    assert "test.pdf: encrypted PDF: a password is needed" in str(locked.error)
    [wrong] = pages_of(data, password="nope")
    assert "password is wrong" in str(wrong.error)
    opened = pages_of(data, password="secret")
    assert [p.error for p in opened] == [None, None]
    assert "Page 2." in opened[1].text_layer.text
    with pytest.raises(LoaderError, match="password"):
        count_pages(data)
    assert count_pages(data, password="secret") == 2


def zero_page_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty (pymupdf refuses to write one)."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 3\n0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return out + b"trailer\n<</Size 3/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % xref


def test_zero_page_pdf_is_one_error_record():
    data = zero_page_pdf()
    [page] = pages_of(data)
    assert page.image is None and page.total_pages == 0 and page.error.page is None
    assert str(page.error) == "test.pdf: no pages"
    assert count_pages(data) == 0
    damaged = data[: data.index(b"xref")]  # the same without its cross-reference table
    [page] = pages_of(damaged)
    assert str(page.error) == "test.pdf: no pages (mupdf could not recover any)"


def test_empty_and_garbage_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    [page] = iter_pages(empty)
    assert str(page.error) == f"{empty}: empty file (0 bytes)"
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    [page] = iter_pdf_pages(junk)
    assert page.image is None and str(junk) in str(page.error)


def test_truncated_pdf_keeps_what_survives_and_reports_the_rest():
    data = make_pdf(3, compress=False)
    page_objects = [i for i in range(len(data)) if data.startswith(b"/Type/Page/", i)]
    cut = data[: data.rfind(b"endobj", 0, page_objects[2]) + 6]  # page 3's object is lost
    pages = pages_of(cut)
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].error is None and "Page 1." in pages[0].text_layer.text
    assert any("repaired" in w for w in pages[0].warnings)
    assert pages[2].image is None
    assert "test.pdf, page 3: page object missing" in str(pages[2].error)


@pytest.mark.parametrize("seed", range(8))
def test_bit_flipped_pdf_never_raises_and_accounts_for_every_page(seed):
    rng = random.Random(seed)
    data = bytearray(make_pdf(3))
    for _ in range(30):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    pages = pages_of(bytes(data))
    assert pages
    for page in pages:
        assert (page.image is None) != (page.error is None)
        if page.error is not None:
            assert str(page.error).startswith("test.pdf")


def test_huge_page_renders_under_the_pixel_limit_with_a_warning():
    data = make_pdf(1, size=(14400, 14400))  # 200 x 200 inches: 829 Mpx at 144 dpi
    [page] = pages_of(data, max_pixels=4_000_000)
    width, height = page.image.size
    assert width * height <= 4_000_000 and width > 1900
    assert "instead of 144" in page.warnings[0] and "max_pixels=4000000" in page.warnings[0]
    assert page.image.info["dpi"][0] < 10
    [normal] = pages_of(make_pdf(1), max_pixels=4_000_000)
    assert normal.warnings == [] and normal.image.size == (1190, 1684)


def test_taking_the_first_page_of_a_long_pdf_renders_only_that_page(monkeypatch):
    doc = pymupdf.open()
    for number in range(200):
        doc.new_page().insert_text((72, 72), f"page {number + 1}")
    data = doc.tobytes()
    rendered = []
    original = pymupdf.Page.get_pixmap

    def counting(self, *args, **kwargs):
        rendered.append(self.number)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pymupdf.Page, "get_pixmap", counting)
    assert count_pages(data) == 200 and rendered == []
    pages = iter_pages(data)
    first = next(pages)
    assert first.number == 1 and first.total_pages == 200
    assert rendered == [0]
    pages.close()


def test_text_layer_usability_rule():
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), BODY)  # born digital
    doc.new_page().insert_text((72, 72), BODY, render_mode=3)  # invisible OCR layer only
    doc.new_page().insert_text((72, 72), "12")  # a page number alone
    scan = doc.new_page()
    scan.insert_image(scan.rect, stream=_png_bytes())  # image only
    usable, invisible, short, image_only = pages_of(doc.tobytes())
    assert usable.text_layer.is_usable
    assert not invisible.text_layer.is_usable and BODY in invisible.text_layer.text
    assert not short.text_layer.is_usable
    assert not image_only.text_layer.is_usable and image_only.text_layer.spans == []
    assert is_usable_text(num_chars=40, num_visible=40, num_clean=40)
    assert not is_usable_text(num_chars=40, num_visible=40, num_clean=30)  # 25% garbage
    assert not is_usable_text(num_chars=100, num_visible=40, num_clean=40)  # mostly hidden


def test_unusable_text_layers_say_why():
    doc = pymupdf.open()
    broken = doc.new_page()
    broken.insert_text((72, 72), BODY, fontname="tiro")
    font = broken.get_fonts()[0][0]  # a font whose lower-case glyphs have no Unicode
    notdef = " ".join("/.notdef" for _ in range(ord("a"), ord("z") + 1))
    doc.xref_set_key(font, "Encoding", "<< /Type /Encoding /BaseEncoding /WinAnsiEncoding "
                     f"/Differences [{ord('a')} {notdef}] >>")
    doc.new_page().insert_text((72, 72), BODY, render_mode=3)
    doc.new_page().insert_text((72, 72), "12")
    doc.new_page()
    pages = pages_of(doc.tobytes())
    reasons = [p.text_layer.unusable_reason for p in pages]
    share = sum(c.islower() for c in BODY) / sum(not c.isspace() for c in BODY)
    assert reasons == [
        f"{share:.0%} of the text layer is U+FFFD replacement characters (glyphs without "
        "Unicode)",
        "100% of the text layer is invisible (an OCR layer under a scan, not trusted)",
        "only 2 readable characters in the text layer (at least 20 needed)",
        "no text layer",
    ]
    assert not any(p.text_layer.is_usable for p in pages)
    assert pages_of(make_pdf(1))[0].text_layer.unusable_reason is None


def test_ruled_table_comes_with_cell_text_and_header_row():
    doc = pymupdf.open()
    page = doc.new_page()
    rows = [["Name", "Qty", "Price"], ["Apple", "3", "1.20"], ["Pear", "5", "0.80"]]
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            cell = pymupdf.Rect(72 + c * 100, 80 + r * 20, 172 + c * 100, 100 + r * 20)
            page.draw_rect(cell, color=(0, 0, 0), width=0.5)
            page.insert_text((cell.x0 + 3, cell.y1 - 6), text, fontsize=10,
                             fontname="hebo" if r == 0 else "helv")
    page.insert_text((72, 200), BODY)
    [loaded] = pages_of(doc.tobytes())
    [table] = loaded.text_layer.tables
    assert table.rows == rows
    assert table.header_rows == 1
    assert table.bbox == pytest.approx((72, 80, 372, 140))
    [plain] = pages_of(doc.tobytes(), extract_tables=False)
    assert plain.text_layer.tables == []
    [bare] = pages_of(doc.tobytes(), text_layer=False)
    assert bare.text_layer is None and bare.image is not None


def test_ruled_rows_stay_rows_when_rules_between_rows_are_missing():
    """A statistical table ruled around its body only: pymupdf sees one body row holding
    every line; it is split line for line. A wrapped cell in a fully ruled table is not."""
    doc = pymupdf.open()
    page = doc.new_page()
    xs, top = [72, 222, 322, 422], 100
    rows = [["Region", "2010", "2020"]] + [[f"Town {i}", str(100 + i), str(120 + i)]
                                           for i in range(6)]
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            page.insert_text((xs[c] + 4, top + r * 16 + 12), text, fontsize=9,
                             fontname="hebo" if r == 0 else "helv")
    bottom = top + len(rows) * 16
    for x in xs:
        page.draw_line((x, top), (x, bottom), width=0.5)
    for y in (top, top + 16, bottom):
        page.draw_line((72, y), (422, y), width=0.5)
    for c, text in enumerate(["A long description", "7", "8"]):  # fully ruled, one cell wraps
        cell = pymupdf.Rect(xs[c], 300, xs[c + 1], 340)
        page.draw_rect(cell, width=0.5)
        page.insert_textbox(cell + (4, 4, -90 if c == 0 else -4, -4), text, fontsize=9)
    [loaded] = pages_of(doc.tobytes())
    assert len({w.line for w in loaded.text_layer.words if w.bbox[1] > 300}) == 2  # it wraps
    body_only, wrapped = loaded.text_layer.tables
    assert body_only.rows == rows and body_only.header_rows == 1
    assert wrapped.rows == [["A long description", "7", "8"]]


def test_bytes_file_like_and_path_inputs_name_the_source(tmp_path):
    data = make_pdf(1)
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    assert next(iter_pages(data)).source == "<bytes>"
    assert next(iter_pages(data, name="upload.pdf")).source == "upload.pdf"
    with open(path, "rb") as f:
        assert next(iter_pages(f)).source == str(path)
    assert next(iter_pages(io.BytesIO(data))).source == "<stream>"
    assert next(iter_pages(path)).source == str(path)
    assert next(iter_pages(str(path))).text_layer.is_usable


def _png_bytes() -> bytes:
    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.set_rect(pixmap.irect, (200, 180, 160))
    return pixmap.tobytes("png")


def test_a_failing_table_finder_costs_the_tables_not_the_page(monkeypatch):
    def broken(self, **kwargs):
        raise RuntimeError("finder broke")

    monkeypatch.setattr(pymupdf.Page, "find_tables", broken)
    doc = pymupdf.open(stream=make_pdf(1))
    doc[0].draw_rect(pymupdf.Rect(72, 700, 300, 760))  # rules: the finder is asked
    [page] = pages_of(doc.tobytes())
    assert page.error is None and page.image is not None and page.text_layer.is_usable
    assert page.warnings == ["tables not read (RuntimeError: finder broke)"]
    [unruled] = pages_of(make_pdf(1))  # nothing drawn: no finder, no warning
    assert unruled.warnings == [] and unruled.text_layer.tables == []
