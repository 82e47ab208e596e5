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

`model_output(sample, page, errors)` writes a page's truth in the model's grounding grammar,
optionally with OCR errors injected, for measuring reconciliation without a model.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import pymupdf

LETTER = (612.0, 792.0)
A4 = (595.0, 842.0)
LIGATURES = {"ffi": "\ufb03", "ffl": "\ufb04", "ff": "\ufb00", "fi": "\ufb01", "fl": "\ufb02"}


@dataclass
class Element:
    """One thing on a page: its model label, box in points, Markdown and words."""

    label: str  # title, sub_title, text, table, header, footer, page_number, code, list
    box: tuple[float, float, float, float]
    markdown: str
    rows: list[list[str]] | None = None  # tables: the cells as the reader should see them
    html: str = ""  # tables: the HTML the model would write (with spans)

    @property
    def words(self) -> list[str]:
        if self.rows is not None:
            return [w for row in self.rows for cell in row for w in cell.split()]
        text = re.sub(r"^(#+ |- |\d+\. )", "", self.markdown, flags=re.M)
        return text.split()


@dataclass
class Sample:
    name: str
    data: bytes
    size: tuple[float, float]
    pages: list[list[Element]] = field(default_factory=list)  # elements in reading order

    def words(self, number: int | None = None) -> list[str]:
        """The words of one page (1-based) or of all, in reading order."""
        pages = self.pages if number is None else [self.pages[number - 1]]
        return [w for elements in pages for e in elements for w in e.words]


class _Page:
    """Writes text on one page and records the elements."""

    def __init__(self, doc: pymupdf.Document, size: tuple[float, float]):
        self.page = doc.new_page(width=size[0], height=size[1])
        self.elements: list[Element] = []

    def words(self, x: float, y: float, words: list[str], *, font: pymupdf.Font, size: float,
              width: float | None = None, style: str = "tex", color=(0, 0, 0)) -> float:
        """Set words from (x, baseline y), justified to `width` when given; the line's bottom.

        style "tex": one text object per word, no space characters; "glyph": one per glyph;
        "office": the line as one string with real spaces.
        """
        writer = pymupdf.TextWriter(self.page.rect, color=color)
        shown = [_ligated(w) if style != "office" else w for w in words]
        lengths = [font.text_length(w, fontsize=size) for w in shown]
        space = font.text_length(" ", fontsize=size)
        if width is not None and len(words) > 1:
            space = (width - sum(lengths)) / (len(words) - 1)
        if style == "office":
            writer.append((x, y), " ".join(shown), font=font, fontsize=size)
        else:
            cursor = x
            for word, length in zip(shown, lengths):
                if style == "glyph":
                    for glyph in word:
                        writer.append((cursor, y), glyph, font=font, fontsize=size)
                        cursor += font.text_length(glyph, fontsize=size)
                else:
                    writer.append((cursor, y), word, font=font, fontsize=size)
                    cursor += length
                cursor += space
        writer.write_text(self.page)
        return y + size * 0.3

    def paragraph(self, x: float, y: float, width: float, text: str, *, font: pymupdf.Font,
                  size: float, style: str = "tex", label: str = "text", markdown: str = "",
                  justify: bool = True, leading: float = 1.25) -> float:
        """Break `text` into lines of `width`; record the element; the next baseline."""
        lines = _break(text.split(), font, size, width)
        top = y - size
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            self.words(x, y, line, font=font, size=size, style=style,
                       width=width if justify and not last else None)
            y += size * leading
        bottom = y - size * leading + size * 0.3
        self.elements.append(Element(label, (x, top, x + width, bottom), markdown or text))
        return y + size * 0.6

    def line(self, x: float, y: float, text: str, *, font: pymupdf.Font, size: float,
             label: str, markdown: str = "", style: str = "office", right: bool = False,
             center: bool = False) -> float:
        """One line of text; `right`/`center` align it on x."""
        length = font.text_length(text, fontsize=size)
        if right:
            x -= length
        elif center:
            x -= length / 2
        self.words(x, y, text.split(), font=font, size=size, style=style)
        self.elements.append(Element(label, (x, y - size, x + length, y + size * 0.3),
                                     markdown or text))
        return y + size * 1.4


def _ligated(word: str) -> str:
    for plain, glyph in LIGATURES.items():
        word = word.replace(plain, glyph)
    return word


def _break(words: list[str], font: pymupdf.Font, size: float, width: float) -> list[list[str]]:
    lines: list[list[str]] = [[]]
    for word in words:
        trial = " ".join([*lines[-1], word])
        if lines[-1] and font.text_length(trial, fontsize=size) > width:
            lines.append([word])
        else:
            lines[-1].append(word)
    return lines


TIMES, TIMES_BOLD = pymupdf.Font("tiro"), pymupdf.Font("tibo")
HELV, HELV_BOLD = pymupdf.Font("helv"), pymupdf.Font("hebo")
COURIER = pymupdf.Font("cour")

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
    first = _Page(doc, LETTER)
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

    second = _Page(doc, LETTER)
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
    return _sample("tex_paper", doc, LETTER, [first, second])


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
    page = _Page(doc, A4)
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
    return _sample("invoice", doc, A4, [page])


REGIONS = [
    "Aberdeen", "Bath", "Cardiff", "Derby", "Exeter", "Falkirk", "Glasgow", "Hull",
    "Inverness", "Jarrow", "Kendal", "Leeds", "Margate", "Newport", "Oxford", "Perth",
    "Reading", "Salford", "Truro", "Ullapool", "Wakefield", "Worthing", "York", "Zennor",
]


def statistics() -> Sample:
    """A ruled table, header 'Region' (rowspan 2), 'Population' (colspan 2), 'Change'."""
    doc = pymupdf.open()
    page = _Page(doc, A4)
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
    return _sample("statistics", doc, A4, [page])


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
    pages: list[_Page] = []

    def new_page() -> _Page:
        page = _Page(doc, A4)
        page.line(72, 40, "ACME Corporation · Annual Report 2024", font=HELV, size=8,
                  label="header")
        pages.append(page)
        return page

    def footer(page: _Page) -> None:
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
    return _sample("report", doc, A4, pages)


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
    page = _Page(doc, A4)
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
    return _sample("newsletter", doc, A4, [page])


def three_columns() -> Sample:
    """A dense A4 page of three narrow TeX-set columns (7 pt, 15 pt gutters), the lines of
    a column sticking out a little into its gutter, as justified glyphs do."""
    doc = pymupdf.open()
    page = _Page(doc, A4)
    texts = PAPER_TEXT + PAPER_PAGE2 + REPORT_BODY
    number = 0
    for x in (40, 220, 400):
        y = 50.0
        while y < 760:
            text = texts[number % len(texts)]
            number += 1
            y = page.paragraph(x, y, 165, text, font=TIMES, size=7)
    return _sample("three_columns", doc, A4, [page])


ALL_SAMPLES = (tex_paper, invoice, statistics, report, newsletter, three_columns)


def _sample(name: str, doc: pymupdf.Document, size, pages: list[_Page]) -> Sample:
    data = doc.tobytes()
    doc.close()
    return Sample(name, data, size, [p.elements for p in pages])


def _html(rows: list[list[str]], header_rows: int = 0) -> str:
    body = "".join("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{body}</table>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- simulated model outputs ----------------------------------------------------------------

MODEL_LABELS = {"list": "text", "code": "text", "header": "text", "footer": "text",
                "page_number": "text"}
HALLUCINATION = "This sentence is not printed anywhere on the page."


@dataclass
class Injected:
    """What `model_output` changed: word substitutions (truth, wrong), a skipped stretch of
    words and a hallucinated sentence, each with the index of its element."""

    substitutions: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: tuple[int, str] | None = None
    hallucinated: int | None = None


def model_output(sample: Sample, number: int, *, seed: int = 0, errors: bool = True,
                 skip: bool = True, hallucinate: bool = True,
                 jitter: int = 3) -> tuple[str, Injected]:
    """Page `number` (1-based) of `sample` in the model's grounding grammar.

    With `errors`, OCR errors are injected the way a vision model makes them: "rn" read as
    "m", "l" as "1", "cl" as "d", "0" as "O", accents dropped (about one word in twelve);
    with `skip` one stretch of eight words is left out of the longest paragraph, with
    `hallucinate` a sentence that is not on the page is added to the second longest.
    Boxes move by up to `jitter` grid steps.
    """
    rng = random.Random(seed * 1000 + number)
    width, height = sample.size
    injected = Injected()
    elements = sample.pages[number - 1]
    prose = sorted((i for i, e in enumerate(elements) if e.label == "text" and e.rows is None),
                   key=lambda i: -len(elements[i].words))
    out = []
    for index, element in enumerate(elements):
        x0, y0, x1, y1 = element.box
        box = [round(x0 / width * 999), round(y0 / height * 999), round(x1 / width * 999),
               round(y1 / height * 999)]
        box = [min(999, max(0, v + rng.randint(-jitter, jitter))) for v in box]
        content = element.html if element.rows is not None else element.markdown
        if errors:
            content = _corrupt(content, index, rng, injected)
            if skip and prose and index == prose[0] and len(element.words) > 24:
                words = content.split(" ")
                start = len(words) // 2
                injected.skipped = (index, " ".join(words[start:start + 8]))
                content = " ".join(words[:start] + words[start + 8:])
            if hallucinate and len(prose) > 1 and index == prose[1]:
                content = f"{content} {HALLUCINATION}"
                injected.hallucinated = index
        label = MODEL_LABELS.get(element.label, element.label)
        out.append(f"<|ref|>{label}<|/ref|><|det|>[[{', '.join(map(str, box))}]]<|/det|>\n"
                   f"{content}\n")
    return "\n".join(out), injected


_CONFUSIONS = [("rn", "m"), ("cl", "d"), ("l", "1"), ("0", "O"), ("é", "e"), ("ü", "u"),
               ("ö", "o"), ("fi", "f"), ("m", "rn")]


def _corrupt(content: str, index: int, rng: random.Random, injected: Injected) -> str:
    pieces = re.split(r"(<[^>]+>|\s+)", content)
    for k, piece in enumerate(pieces):
        if not piece or piece.startswith("<") or piece.isspace() or rng.random() > 1 / 12:
            continue
        for wrong_from, wrong_to in _CONFUSIONS:
            if wrong_from in piece and piece.strip("#-*") == piece:
                at = piece.index(wrong_from)
                pieces[k] = piece[:at] + wrong_to + piece[at + len(wrong_from):]
                injected.substitutions.append((index, piece, pieces[k]))
                break
    return "".join(pieces)


# -- measures ---------------------------------------------------------------------------------

BULLETS = {"\u2022", "\u25e6", "\u25aa", "\u25cf", "-", "*", "\u2013"}


def layer_words(data: bytes) -> list[list[str]]:
    """Each page's text-layer words as pymupdf splits them (ligatures expanded, as the
    loader reads them), without list bullets (Markdown writes its own)."""
    doc = pymupdf.open(stream=data)
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
    pages = [[w[4] for w in page.get_text("words", flags=flags) if w[4] not in BULLETS]
             for page in doc]
    doc.close()
    return pages


def markdown_words(markdown: str) -> list[str]:
    """The words a reader sees in Markdown: tags, entities, heading and list marks, pipe
    table rules, emphasis marks, fences and escapes left out (code inside a fence is taken
    as it is)."""
    import html

    words: list[str] = []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            line = html.unescape(re.sub(r"<[^>]+>", " ", line))
            line = re.sub(r"^\s*(#{1,6}|[-*+])(\s|$)", " ", line)
            line = re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~])", r"\1", line)
            line = re.sub(r"(^|\s)[*_]+|[*_]+(\s|$)", " ", line.replace("|", " "))
        words.extend(line.split())
    return words


def word_recall(words: list[str], markdown: str) -> float:
    """The share of `words` found as words in `markdown` (as many times as they occur)."""
    from collections import Counter

    have, need = Counter(markdown_words(markdown)), Counter(words)
    return sum(min(n, have[w]) for w, n in need.items()) / max(1, sum(need.values()))


def in_order(elements: list[Element], markdown: str) -> float:
    """The share of elements (by their first words) found after the element before them."""
    flat = " ".join(markdown_words(markdown))
    found = ordered = position = 0
    for element in elements:
        key = " ".join(element.words[:4])
        at = flat.find(key, position)
        if at >= 0:
            found, ordered, position = found + 1, ordered + 1, at
        elif key in flat:
            found += 1
    return ordered / max(1, found)
