"""Born-digital PDFs made with pymupdf the way real producers write them, with ground truth.

Each sample records what is on its pages as `Element`s (label, box in points, Markdown as
the model would write it, and the plain words), so a test or a benchmark knows the truth:
- `tex_paper`: a TeX-like two-column paper. Words are placed one by one without space
  characters (mupdf synthesises the spaces, as it does for pdfTeX's TJ kerning), body lines
  are justified, words carry ligature glyphs (U+FB01 ...), one line is set glyph by glyph.
- `invoice`: an invoice generator's page: the footer note is written first in the content
  stream, the line items are an unruled table (one rule under the header), totals right.
- `statistics`: a ruled statistical table with a two-row header (rowspan and colspan) and
  24 data rows, a caption and a source note.
- `report`: a three-page office report with running header and footer, a title, section
  headings of one size on every page, bullets, a numbered list and a code block whose
  lines start with `#`.
- `newsletter`: two columns whose right column comes first in the content stream.
- `three_columns`: a dense page of three narrow 7 pt columns.

`layer_outputs.py` writes a page's truth in the model's grounding grammar (with OCR errors,
for measuring the reconciliation without a model) and measures Markdown against the truth.
"""

from __future__ import annotations

import random

import pymupdf

from tests.pdf_writer import (
    COURIER,
    HELV,
    HELV_BOLD,
    TIMES,
    TIMES_BOLD,
    Element,
    PageWriter,
    Sample,
    make_sample,
)

LETTER = (612.0, 792.0)
A4 = (595.0, 842.0)


PAPER_TEXT = [
    "Dynamic languages such as JavaScript are more difficult to compile efficiently than "
    "statically typed ones, since the types of values are only known at run time. Modern "
    "engines therefore record the types they observe and specialise the hot paths of a "
    "program to them, falling back to a slower path when an assumption fails.",
    "We present a tracing compiler that finds these paths with very little overhead. It "
    "records one trace per loop, reflows the types it saw into a typed intermediate "
    "form and emits efficient machine code for it. The effect on start-up time is small, "
    "and the steady state runs several times faster than a baseline interpreter.",
    "Our contributions are threefold: a cheap way to find hot loops, a type specialisation "
    "that survives the common cases of polymorphism, and an evaluation on a suite of "
    "real-world programs written by others, with their own flaws and quirks.",
]
PAPER_PAGE2 = [
    "Trace trees were first described for a Java virtual machine, where they specialised "
    "loops of bytecode; our design differs in how side exits are attached. A side exit that "
    "becomes hot grows its own trace, which is then stitched to the tree it left.",
    "Compilers for Self and Smalltalk first used type feedback from inline caches. Their "
    "lessons shape our fast paths: most call sites see one receiver type, a few see two, and "
    "the rest are rare enough to leave to the interpreter without a measurable loss.",
    "Figure 3 shows the time to the first compiled trace for each benchmark. The median is "
    "under a millisecond, and no program waits more than five milliseconds for its first "
    "trace, which is well below what a user of an interactive page would notice.",
    "We finally note that the effects of garbage collection are excluded from all timings, "
    "because the collector is shared with the baseline and affects both configurations in "
    "the same way; the raw figures are in the supplementary material.",
]


def tex_paper() -> Sample:
    """Two pages of a two-column TeX paper (US letter)."""
    doc = pymupdf.open()
    first = PageWriter(doc, LETTER)
    y = first.line(306, 96, "Tracing Compilation for Dynamic Languages", font=TIMES_BOLD,
                   size=17, label="title", markdown="# Tracing Compilation for Dynamic Languages",
                   style="tex", center=True)
    y = first.line(306, y + 6, "Ada Lovelace and Charles Babbage", font=TIMES, size=11,
                   label="text", style="tex", center=True)
    y = first.line(72, y + 14, "Abstract", font=TIMES_BOLD, size=10, label="sub_title",
                   markdown="## Abstract", style="tex")
    y = first.paragraph(72, y, 468, "We describe a tracing just-in-time compiler for a "
                        "dynamic language and measure its effect on fifteen programs. The "
                        "compiled code is up to seven times faster than the interpreter.",
                        font=TIMES, size=9)
    columns = [(72, 228), (318, 228)]
    top = y + 12
    x, width = columns[0]
    y = first.line(x, top, "1 Introduction", font=TIMES_BOLD, size=12, label="sub_title",
                   markdown="## 1 Introduction", style="tex")
    y = first.paragraph(x, y, width, PAPER_TEXT[0], font=TIMES, size=10)
    y = first.paragraph(x, y, width, PAPER_TEXT[1], font=TIMES, size=10)
    x, width = columns[1]
    y = first.paragraph(x, top, width, PAPER_TEXT[2], font=TIMES, size=10)
    y = first.line(x, y + 4, "1.1 Outline", font=TIMES_BOLD, size=10, label="sub_title",
                   markdown="### 1.1 Outline", style="tex")
    outline = "Section 2 reviews related work and Section 3 describes the measurements."
    y = first.paragraph(x, y, width, outline, font=TIMES, size=10, style="glyph")
    first.line(306, 750, "1", font=TIMES, size=10, label="page_number", style="tex",
               center=True)

    second = PageWriter(doc, LETTER)
    x, width = columns[0]
    y = second.line(x, 80, "2 Related Work", font=TIMES_BOLD, size=12, label="sub_title",
                    markdown="## 2 Related Work", style="tex")
    y = second.paragraph(x, y, width, PAPER_PAGE2[0], font=TIMES, size=10)
    y = second.paragraph(x, y, width, PAPER_PAGE2[1], font=TIMES, size=10)
    x, width = columns[1]
    y = second.line(x, 80, "3 Evaluation", font=TIMES_BOLD, size=12, label="sub_title",
                    markdown="## 3 Evaluation", style="tex")
    y = second.paragraph(x, y, width, PAPER_PAGE2[2], font=TIMES, size=10)
    y = second.paragraph(x, y, width, PAPER_PAGE2[3], font=TIMES, size=10)
    second.line(306, 750, "2", font=TIMES, size=10, label="page_number", style="tex",
                center=True)
    return make_sample("tex_paper", doc, LETTER, [first, second])


INVOICE_ITEMS = [
    ("Ergonomic office chair, black", "2", "149.00", "298.00"),
    ("Standing desk frame", "1", "389.50", "389.50"),
    ("Desk top, oak veneer 160 x 80", "1", "214.00", "214.00"),
    ("Monitor arm, dual", "2", "79.90", "159.80"),
    ("Cable tray", "3", "12.40", "37.20"),
    ("Installation and assembly", "4", "45.00", "180.00"),
    ("Delivery (Zürich area)", "1", "35.00", "35.00"),
    ("Café table, round", "1", "99.00", "99.00"),
]


def invoice() -> Sample:
    """An A4 invoice with an unruled line-item table; the footer is drawn first."""
    doc = pymupdf.open()
    page = PageWriter(doc, A4)
    footer = "Thank you for your business. Payment is due within 30 days of the invoice date."
    page.line(72, 800, footer, font=HELV, size=8, label="footer")
    footer_element = page.elements.pop()
    y = page.line(72, 80, "Northwind Supplies Ltd.", font=HELV_BOLD, size=16, label="title",
                  markdown="# Northwind Supplies Ltd.")
    y = page.line(72, y, "12 Harbour Street, Bristol BS1 4QA", font=HELV, size=9, label="text")
    page.line(523, 80, "INVOICE", font=HELV_BOLD, size=20, label="sub_title",
              markdown="## INVOICE", right=True)
    meta_y = 110
    for text in ("Invoice no. INV-2024-0042", "Date: 15 March 2024", "Due: 14 April 2024"):
        meta_y = page.line(523, meta_y, text, font=HELV, size=9, label="text", right=True)
    y = page.line(72, 170, "Bill to:", font=HELV_BOLD, size=10, label="text")
    y = page.line(72, y, "Müller & Söhne GmbH, Bahnhofstrasse 7, 8001 Zürich", font=HELV,
                  size=10, label="text")
    header = ("Description", "Qty", "Unit price", "Amount")
    columns = [(72, "left"), (340, "right"), (430, "right"), (523, "right")]
    top, row_height = 240.0, 18.0
    rows = [header, *INVOICE_ITEMS]
    for r, row in enumerate(rows):
        baseline = top + r * row_height + 12
        for (x, align), text in zip(columns, row):
            font = HELV_BOLD if r == 0 else HELV
            length = font.text_length(text, fontsize=10)
            left = x - length if align == "right" else x
            page.words(left, baseline, text.split(), font=font, size=10, style="office")
        if r == 0:
            page.page.draw_line((72, top + row_height), (523, top + row_height), width=0.6)
    bottom = top + len(rows) * row_height
    page.elements.append(Element("table", (72, top, 523, bottom), "",
                                 rows=[list(r) for r in rows],
                                 html=_html([list(r) for r in rows], header_rows=1)))
    y = bottom + 24
    for label, value in (("Subtotal", "1,412.50"), ("VAT 20%", "282.50"),
                         ("Total due EUR", "1,695.00")):
        font = HELV_BOLD if label.startswith("Total") else HELV
        page.line(430, y, label, font=font, size=10, label="text", right=True)
        page.elements.pop()
        page.line(523, y, value, font=font, size=10, label="text", right=True)
        page.elements.pop()
        length = font.text_length(label, fontsize=10)
        page.elements.append(Element("text", (430 - length, y - 10, 523, y + 3),
                                     f"{label} {value}"))
        y += 16
    bank = "IBAN GB29 NWBK 6016 1331 9268 19 · BIC NWBKGB2L"
    page.line(72, y + 30, bank, font=HELV, size=9, label="text")
    page.elements.append(footer_element)
    return make_sample("invoice", doc, A4, [page])


REGIONS = [
    "Aberdeen", "Bath", "Cardiff", "Derby", "Exeter", "Falkirk", "Glasgow", "Hull",
    "Inverness", "Jarrow", "Kendal", "Leeds", "Margate", "Newport", "Oxford", "Perth",
    "Reading", "Salford", "Truro", "Ullapool", "Wakefield", "Worthing", "York", "Zennor",
]


def statistics() -> Sample:
    """A ruled table, header 'Region' (rowspan 2), 'Population' (colspan 2), 'Change'."""
    doc = pymupdf.open()
    page = PageWriter(doc, A4)
    caption = "Table 3. Population by region, 2010 and 2020 (thousands)"
    page.line(72, 70, caption, font=HELV_BOLD, size=10, label="table_caption")
    xs = [72, 222, 322, 422, 523]
    top, row_height = 84.0, 16.0
    rng = random.Random(3)
    body = []
    for region in REGIONS:
        a = rng.randint(40, 900)
        b = a + rng.randint(-30, 80)
        body.append([region, f"{a:,}", f"{b:,}", f"{(b - a) / a * 100:+.1f}"])
    shape = page.page.new_shape()

    def cell(x0: float, y0: float, x1: float, y1: float, text: str, bold: bool) -> None:
        shape.draw_rect(pymupdf.Rect(x0, y0, x1, y1))
        font = HELV_BOLD if bold else HELV
        page.words(x0 + 4, (y0 + y1) / 2 + 3.5, text.split(), font=font, size=9,
                   style="office")

    cell(xs[0], top, xs[1], top + 2 * row_height, "Region", True)
    cell(xs[1], top, xs[3], top + row_height, "Population", True)
    cell(xs[3], top, xs[4], top + 2 * row_height, "Change %", True)
    cell(xs[1], top + row_height, xs[2], top + 2 * row_height, "2010", True)
    cell(xs[2], top + row_height, xs[3], top + 2 * row_height, "2020", True)
    for r, row in enumerate(body):
        y0 = top + (r + 2) * row_height
        for c, text in enumerate(row):
            cell(xs[c], y0, xs[c + 1], y0 + row_height, text, False)
    shape.finish(color=(0, 0, 0), width=0.5)
    shape.commit()
    bottom = top + (len(body) + 2) * row_height
    rows = [["Region", "Population", "", "Change %"], ["", "2010", "2020", ""], *body]
    html = ("<table><tr><td rowspan=\"2\">Region</td><td colspan=\"2\">Population</td>"
            "<td rowspan=\"2\">Change %</td></tr><tr><td>2010</td><td>2020</td></tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
            + "</table>")
    page.elements.append(Element("table", (72, top, 523, bottom), "", rows=rows, html=html))
    page.line(72, bottom + 16, "Source: National Statistics Office, census tables.",
              font=HELV, size=8, label="table_footnote")
    page.line(297, 810, "14", font=HELV, size=9, label="page_number", center=True)
    return make_sample("statistics", doc, A4, [page])


REPORT_BODY = [
    "The year brought steady growth in every region we serve. Revenue rose by eight percent "
    "while costs stayed flat, and the number of customers passed twelve thousand for the "
    "first time in the history of the company.",
    "Our teams moved two production sites to renewable power and reduced the energy used per "
    "unit by a fifth. The savings fund the new training programme described below.",
    "The build system was rewritten this year. Every product now builds from one repository "
    "with one command, and a nightly job publishes the results for the quality team.",
    "The configuration below is the whole of the nightly job; it is short on purpose, so that "
    "a new engineer can read it on the first day.",
    "We expect another year of growth, driven by the new markets in the east and by the "
    "services business, which now accounts for a third of revenue.",
    "Risks remain: energy prices, the supply of components and the hiring market for "
    "engineers. The board reviews each of them every quarter.",
]


def report() -> Sample:
    """Three A4 pages: running header/footer, title, sections, lists, a code block."""
    doc = pymupdf.open()
    pages: list[PageWriter] = []

    def new_page() -> PageWriter:
        page = PageWriter(doc, A4)
        page.line(72, 40, "ACME Corporation · Annual Report 2024", font=HELV, size=8,
                  label="header")
        pages.append(page)
        return page

    def footer(page: PageWriter) -> None:
        page.line(297, 810, f"Page {len(pages)} of 3", font=HELV, size=8,
                  label="page_number", center=True)

    first = new_page()
    y = first.line(72, 100, "Annual Report 2024", font=HELV_BOLD, size=22, label="title",
                   markdown="# Annual Report 2024")
    y = first.line(72, y + 8, "1. Overview", font=HELV_BOLD, size=14, label="sub_title",
                   markdown="## 1. Overview")
    y = first.paragraph(72, y, 451, REPORT_BODY[0], font=HELV, size=10.5, style="office")
    for item in ("Revenue grew in all regions", "Two sites run on renewable power",
                 "Customer numbers passed twelve thousand"):
        y = first.line(72, y, f"\u2022 {item}", font=HELV, size=10.5, label="list",
                       markdown=f"- {item}")
    y = first.paragraph(72, y + 6, 451, REPORT_BODY[1], font=HELV, size=10.5, style="office")
    for n, item in enumerate(("Finish the new plant", "Open the eastern office"), start=1):
        y = first.line(72, y, f"{n}. {item}", font=HELV, size=10.5, label="list",
                       markdown=f"{n}. {item}")
    footer(first)

    second = new_page()
    y = second.line(72, 100, "2. Operations", font=HELV_BOLD, size=14, label="sub_title",
                    markdown="## 2. Operations")
    y = second.line(72, y + 4, "2.1 Build system", font=HELV_BOLD, size=12,
                    label="sub_title", markdown="### 2.1 Build system")
    y = second.paragraph(72, y, 451, REPORT_BODY[2], font=HELV, size=10.5, style="office")
    y = second.paragraph(72, y, 451, REPORT_BODY[3], font=HELV, size=10.5, style="office")
    code = ["#This file configures the nightly build", "# Run it with: make nightly",
            "def main():", "    build(target=\"release\")  # no tests here"]
    code_top = y
    for line in code:
        indent = (len(line) - len(line.lstrip())) * COURIER.text_length(" ", fontsize=9)
        second.words(80 + indent, y, line.split(), font=COURIER, size=9, style="office")
        y += 12
    second.elements.append(Element("code", (80, code_top - 9, 400, y - 9),
                                   "\n".join(code)))
    y = second.paragraph(72, y + 10, 451, "The job runs at two in the morning.", font=HELV,
                         size=10.5, style="office")
    footer(second)

    third = new_page()
    y = third.line(72, 100, "3. Outlook", font=HELV_BOLD, size=14, label="sub_title",
                   markdown="## 3. Outlook")
    y = third.paragraph(72, y, 451, REPORT_BODY[4], font=HELV, size=10.5, style="office")
    y = third.paragraph(72, y, 451, REPORT_BODY[5], font=HELV, size=10.5, style="office")
    footer(third)
    return make_sample("report", doc, A4, pages)


NEWS_LEFT = [
    "The town council met on Tuesday to discuss the new bridge. After a long debate the "
    "members agreed to ask three firms for offers before the summer.",
    "Residents of the old quarter asked for a footpath on both sides, and the council "
    "promised to include one in every offer it receives.",
]
NEWS_RIGHT = [
    "The library reopens next month after a year of repairs. The reading room keeps its "
    "painted ceiling, and a new children's corner fills the former archive.",
    "Opening hours will be longer on Thursdays, when volunteers run a homework club for "
    "pupils of the two primary schools.",
]


def newsletter() -> Sample:
    """Two columns on A4; the right column is written before the left in the stream."""
    doc = pymupdf.open()
    page = PageWriter(doc, A4)
    y = page.line(72, 70, "Riverside Gazette", font=TIMES_BOLD, size=20, label="title",
                  markdown="# Riverside Gazette")
    top = y + 10
    ry = page.line(318, top, "Library reopens", font=TIMES_BOLD, size=13, label="sub_title",
                   markdown="## Library reopens")
    for text in NEWS_RIGHT:
        ry = page.paragraph(318, ry, 205, text, font=TIMES, size=10, style="office")
    right = page.elements[1:]
    page.elements = page.elements[:1]
    ly = page.line(72, top, "Bridge plans", font=TIMES_BOLD, size=13, label="sub_title",
                   markdown="## Bridge plans")
    for text in NEWS_LEFT:
        ly = page.paragraph(72, ly, 205, text, font=TIMES, size=10, style="office")
    page.elements.extend(right)
    return make_sample("newsletter", doc, A4, [page])


def three_columns() -> Sample:
    """A dense A4 page of three narrow TeX-set columns (7 pt, 15 pt gutters), the lines of
    a column sticking out a little into its gutter, as justified glyphs do."""
    doc = pymupdf.open()
    page = PageWriter(doc, A4)
    texts = PAPER_TEXT + PAPER_PAGE2 + REPORT_BODY
    number = 0
    for x in (40, 220, 400):
        y = 50.0
        while y < 760:
            text = texts[number % len(texts)]
            number += 1
            y = page.paragraph(x, y, 165, text, font=TIMES, size=7)
    return make_sample("three_columns", doc, A4, [page])


ALL_SAMPLES = (tex_paper, invoice, statistics, report, newsletter, three_columns)




def _html(rows: list[list[str]], header_rows: int = 0) -> str:
    body = "".join("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{body}</table>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


