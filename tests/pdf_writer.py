"""A small PDF writer for test documents: text set the way real producers set it.

`PageWriter` puts words on a pymupdf page one by one without space characters (as pdfTeX
does, so mupdf synthesises the spaces), glyph by glyph, or as whole lines with real
spaces (office suites), justified or not, and records each thing it writes as an `Element`
with its label, box and Markdown, the truth a test compares with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pymupdf

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


class PageWriter:
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


def make_sample(name: str, doc: pymupdf.Document, size, pages: list[PageWriter]) -> Sample:
    """The document's bytes and the pages' elements (closes `doc`)."""
    data = doc.tobytes()
    doc.close()
    return Sample(name, data, size, [p.elements for p in pages])
