"""A PDF page's own text: spans and words with boxes, plain text, fonts, ruled tables, and
whether (and if not, why not) it can stand in for OCR.

Coordinates are PDF points on the page as displayed: origin top-left, the page's /Rotate
applied, so they line up with the rendered image (pixels = points * dpi / 72).
mupdf reports text on the unrotated page; `page.rotation_matrix` maps it.

The text is read once per page (one mupdf text page, `TEXT_FLAGS`): ligatures come out
expanded ("ﬁ" -> "fi", mupdf's own expansion), spaces mupdf synthesises between glyphs
placed apart (pdfTeX writes no space characters) are kept as spans, and an unknown glyph
comes out as U+FFFD rather than its glyph id, so the usability rule can count it. Control
and zero-width characters are left out of spans and words (`num_removed_chars` counts them).

The usability rule (`usability`) decides whether the text layer alone is good enough to
skip the model: see its docstring and docs/loaders.md.
"""

from __future__ import annotations

import re
import unicodedata

from loaders.mupdf import pymupdf
from loaders.page import FontStats, LayerTable, LayerWord, TextLayer, TextSpan

MIN_USABLE_CHARS = 20  # visible, clean characters a page needs for its text layer to count
MIN_CLEAN_FRACTION = 0.9  # of visible characters: printable, not U+FFFD, not private-use
MIN_VISIBLE_FRACTION = 0.5  # of all characters: drawn (filled or stroked, not transparent)
SHORT_LINE_CHARS = 120  # a line this short, in one size, may be a heading

# whitespace kept (synthetic spaces), clipped to the page, no images; not
# TEXT_PRESERVE_LIGATURES (expand them) nor TEXT_CID_FOR_UNKNOWN_UNICODE (U+FFFD instead)
TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP

_FILLED = 16  # mupdf FZ_STEXT_FILLED / FZ_STEXT_STROKED char flags
_STROKED = 32
_BOLD = 16  # pymupdf span flag bits
_MONO = 8
_MONO_NAMES = ("mono", "courier", "consol", "menlo", "typewriter", "cmtt", "sfmono")
_REMOVED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff]")  # controls, zero-width
_WHITESPACE_CONTROLS = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def extract_text_layer(page: pymupdf.Page) -> TextLayer:
    """Read one page's spans, words, text, fonts and usability (tables: `find_layer_tables`).

    Raises whatever pymupdf raises on a damaged page; the caller reports it.
    """
    rotate = page.rotation_matrix
    textpage = page.get_textpage(flags=TEXT_FLAGS)
    spans: list[TextSpan] = []
    counts = _Counts()
    fonts = FontStats()
    lines_text: list[str] = []
    for block in textpage.extractDICT()["blocks"]:
        if block.get("type", 0) != 0:
            continue  # an image block
        block_lines: list[str] = []
        for line_index, line in enumerate(block["lines"]):
            line_spans = []
            for span in line["spans"]:
                raw = span["text"]
                if not raw:
                    continue
                counts.add(raw, _is_visible(span))
                text = clean_text(raw)
                counts.num_removed += len(raw) - len(text)
                if not text:
                    continue
                bbox = pymupdf.Rect(span["bbox"]) * rotate
                line_spans.append(
                    TextSpan(
                        text=text,
                        bbox=(bbox.x0, bbox.y0, bbox.x1, bbox.y1),
                        font=span.get("font", ""),
                        size=float(span.get("size", 0.0)),
                        is_bold=_is_bold(span),
                        block=block.get("number", 0),
                        line=line_index,
                        is_mono=_is_mono(span),
                    )
                )
            spans.extend(line_spans)
            block_lines.append("".join(s.text for s in line_spans).strip())
            _count_styles(fonts, line_spans)
        if any(block_lines):
            lines_text.append("\n".join(line for line in block_lines if line))
    words = _words(textpage, rotate)
    reason = usability(counts.num_chars, counts.num_visible, counts.num_clean,
                       bad=counts.bad)
    return TextLayer(
        spans=spans, text="\n\n".join(lines_text), is_usable=reason is None, words=words,
        unusable_reason=reason, num_removed_chars=counts.num_removed, fonts=fonts,
    )


def document_fonts(doc: pymupdf.Document, max_pages: int = 12) -> FontStats:
    """The styles of a document, from up to `max_pages` pages spread evenly over it.

    Lets every page name its headings by the same sizes (a 14 pt heading is a level 2 on
    every page, not a title on the pages without one). The caller holds the mupdf lock.
    """
    stats = FontStats()
    total = doc.page_count
    numbers = sorted({round(i * (total - 1) / max(1, max_pages - 1)) for i in range(max_pages)})
    for number in (n for n in numbers if n < total):
        page = doc.load_page(number)
        for block in page.get_text("dict", flags=TEXT_FLAGS)["blocks"]:
            for line in block.get("lines", []):
                spans = [TextSpan(text=s["text"], bbox=(0, 0, 0, 0), size=s["size"],
                                  is_bold=_is_bold(s)) for s in line["spans"]]
                _count_styles(stats, spans)
    return stats


def clean_text(text: str) -> str:
    """Text without control and zero-width characters; tabs and line breaks become spaces."""
    return _REMOVED.sub("", text.translate(_WHITESPACE_CONTROLS))


def style_of(size: float, is_bold: bool) -> tuple[float, bool]:
    """The style key of `FontStats`: the size rounded to half a point, and boldness."""
    return round(size * 2) / 2, is_bold


def usability(num_chars: int, num_visible: int, num_clean: int,
              bad: dict[str, int] | None = None) -> str | None:
    """Why a text layer cannot stand in for OCR, or None when it can.

    Counting non-space characters, the layer is usable when all three hold:
    - at least MIN_USABLE_CHARS (20) visible, clean characters (a page with only a page
      number or a stamp goes to the model);
    - at least 90% of the visible characters are clean: printable, not U+FFFD (mupdf's
      mark for a glyph without Unicode), not private-use, not control (catches fonts
      with broken ToUnicode maps);
    - at least half of all characters are visible, i.e. drawn filled or stroked and not
      fully transparent (a scan under an invisible OCR layer goes to the model, which
      reads the image better than an unknown earlier OCR).

    Args:
        num_chars: all non-space characters of the page's text layer.
        num_visible: those drawn visibly.
        num_clean: visible ones that are clean.
        bad: visible unclean characters by kind ("U+FFFD replacement", "private-use",
            "control", "unassigned"), to name the worst in the reason.

    Returns:
        None, or the reason in words, e.g. "38% of the text layer is U+FFFD replacement
        characters (glyphs without Unicode)".
    """
    if num_chars == 0:
        return "no text layer"
    if num_visible < MIN_VISIBLE_FRACTION * num_chars:
        hidden = 1 - num_visible / num_chars
        return (f"{hidden:.0%} of the text layer is invisible (an OCR layer under a scan, "
                "not trusted)")
    if num_clean < MIN_CLEAN_FRACTION * num_visible:
        kind, count = max((bad or {"unprintable": num_visible - num_clean}).items(),
                          key=lambda kv: kv[1])
        what = {"U+FFFD replacement": "U+FFFD replacement characters (glyphs without "
                "Unicode)"}.get(kind, f"{kind} characters")
        return f"{count / num_visible:.0%} of the text layer is {what}"
    if num_clean < MIN_USABLE_CHARS:
        return (f"only {num_clean} readable characters in the text layer (at least "
                f"{MIN_USABLE_CHARS} needed)")
    return None


def is_usable_text(num_chars: int, num_visible: int, num_clean: int) -> bool:
    """Whether a text layer can stand in for OCR (the rule of `usability`)."""
    return usability(num_chars, num_visible, num_clean) is None


def has_ruling(page: pymupdf.Page) -> bool:
    """Whether the page draws anything a ruled table could be made of (rectangles, or at
    least four line segments); finding tables costs 10-20 ms a page, this well under 1."""
    num_lines = 0
    for path in page.get_cdrawings():
        for item in path.get("items", ()):
            if item[0] in ("re", "qu"):
                return True
            num_lines += item[0] == "l"
    return num_lines >= 4


def find_layer_tables(page: pymupdf.Page, spans: list[TextSpan],
                      words: list[LayerWord] | None = None) -> list[LayerTable]:
    """Ruled tables drawn in the page's vector content, with their cell text and header rows.

    Uses pymupdf's line-based finder without its layout model or grid refinement (about
    30 ms for a page with a 100-cell table, instead of 0.1 to 1 s), and only on pages that
    draw rules (`has_ruling`). Tables without rules are found from the text's alignment
    by `dsocr_connectors.text_layer`. Cell text is re-read from the page's words by cell
    box: pymupdf's own cell text splits numbers such as "1.20" at the decimal point. A
    row that holds several lines of text in more than half of its cells, line for line,
    is that many rows (a table ruled around its body but not between its rows), so rows
    stay rows. Header rows are the leading rows set entirely in bold, when the rest of the
    table is not (at most 3).

    Args:
        page: the pymupdf page.
        spans: its text-layer spans (for bold).
        words: its text-layer words (`TextLayer.words`); read from the page when None.
    """
    if not has_ruling(page):
        return []
    try:
        found = page.find_tables(use_layout=False)
    except TypeError:  # pymupdf before its layout model: line-based finding is all it does
        found = page.find_tables()
    if not found.tables:
        return []
    if words is None:
        words = _words(page.get_textpage(flags=TEXT_FLAGS), page.rotation_matrix)
    span_boxes = [(_center(s.bbox), s.is_bold) for s in spans if s.text.strip()]
    tables = []
    for table in found.tables:
        rows: list[list[str | None]] = []
        bold_rows: list[bool] = []
        for row in table.rows:
            split = _row_texts(words, row.cells)
            rows.extend(split)
            bold_rows.extend([_is_bold_row(span_boxes, row.cells)] * len(split))
        header_rows = 0
        while header_rows < min(3, len(rows) - 1) and bold_rows[header_rows]:
            header_rows += 1
        tables.append(LayerTable(bbox=tuple(table.bbox), rows=rows, header_rows=header_rows))
    return tables


MIN_FIGURE_PT = 36.0  # half an inch each way: rules, underlines and bullets are no figures


def find_layer_figures(page: pymupdf.Page, tables: list[LayerTable]) -> list[tuple[float, ...]]:
    """Regions the page draws as pictures: its raster images and pymupdf's clusters of vector
    drawing (charts, diagrams), at least `MIN_FIGURE_PT` each way, without the ones that are
    mostly a table's rules or inside a larger region. In points on the displayed page."""
    rotate = page.rotation_matrix
    regions = [pymupdf.Rect(info["bbox"]) for info in page.get_image_info()]
    if page.get_cdrawings():
        regions += page.cluster_drawings()
    shown = page.rect * rotate
    found: list[pymupdf.Rect] = []
    for region in sorted((r * rotate for r in regions), key=lambda r: -r.get_area()):
        region = region & shown
        if region.width < MIN_FIGURE_PT or region.height < MIN_FIGURE_PT:
            continue
        area = region.get_area()
        if any((region & pymupdf.Rect(t.bbox)).get_area() > area / 2 for t in tables):
            continue  # a table's rules
        if any((region & kept).get_area() > area * 0.9 for kept in found):
            continue  # inside a figure already found
        found.append(region)
    return [(r.x0, r.y0, r.x1, r.y1) for r in found]


class _Counts:
    """Non-space characters of a page: all, visible, clean, and the unclean by kind."""

    def __init__(self) -> None:
        self.num_chars = self.num_visible = self.num_clean = self.num_removed = 0
        self.bad: dict[str, int] = {}

    def add(self, text: str, is_visible: bool) -> None:
        chars = [c for c in text if not c.isspace()]
        self.num_chars += len(chars)
        if not is_visible:
            return
        self.num_visible += len(chars)
        for char in chars:
            kind = _unclean_kind(char)
            if kind is None:
                self.num_clean += 1
            else:
                self.bad[kind] = self.bad.get(kind, 0) + 1


def _unclean_kind(char: str) -> str | None:
    if char == "\ufffd":
        return "U+FFFD replacement"
    category = unicodedata.category(char)
    return {"Co": "private-use", "Cc": "control", "Cn": "unassigned",
            "Cs": "surrogate"}.get(category)


def _count_styles(fonts: FontStats, spans: list[TextSpan]) -> None:
    text_len = 0
    for span in spans:
        n = len(span.text.strip())
        if n:
            key = style_of(span.size, span.is_bold)
            fonts.chars[key] = fonts.chars.get(key, 0) + n
            text_len += n
    styled = [s for s in spans if s.text.strip()]
    if styled and text_len <= SHORT_LINE_CHARS and len({s.size for s in styled}) == 1:
        key = style_of(styled[0].size, all(s.is_bold for s in styled))
        fonts.short_lines[key] = fonts.short_lines.get(key, 0) + 1


def _words(textpage: pymupdf.TextPage, rotate: pymupdf.Matrix) -> list[LayerWord]:
    words = []
    for x0, y0, x1, y1, text, block, line, _ in textpage.extractWORDS():
        text = clean_text(text).strip()
        if text:
            rect = pymupdf.Rect(x0, y0, x1, y1) * rotate
            words.append(LayerWord(text, (rect.x0, rect.y0, rect.x1, rect.y1), block, line))
    return words


def _row_texts(words: list[LayerWord], cells) -> list[list[str | None]]:
    """One ruled row's cell texts, or several rows' when it holds them (see
    `find_layer_tables`); None for a cell covered by a spanning cell."""
    inside = [None if cell is None else [w for w in words if _holds(cell, w.bbox)]
              for cell in cells]
    filled = [ws for ws in inside if ws]
    lines = _text_lines([w for ws in filled for w in ws])
    if len(lines) > 1 and all(
        2 * sum(any(y0 <= _center(w.bbox)[1] <= y1 for w in ws) for ws in filled) > len(filled)
        for y0, y1 in lines
    ):
        return [[None if ws is None else " ".join(
            w.text for w in ws if y0 <= _center(w.bbox)[1] <= y1) for ws in inside]
            for y0, y1 in lines]
    return [[None if ws is None else " ".join(w.text for w in ws) for ws in inside]]


def _holds(cell, box) -> bool:
    x, y = _center(box)
    return cell[0] <= x < cell[2] and cell[1] <= y < cell[3]


def _text_lines(words: list[LayerWord]) -> list[tuple[float, float]]:
    """The y-ranges of the text lines the words sit on, top to bottom."""
    lines: list[list[float]] = []
    for word in sorted(words, key=lambda w: _center(w.bbox)[1]):
        y = _center(word.bbox)[1]
        if lines and y - lines[-1][1] <= 0.5 * (word.bbox[3] - word.bbox[1]):
            lines[-1][1] = y
        else:
            lines.append([y, y])
    return [(y0, y1) for y0, y1 in lines]


def _is_bold_row(span_boxes, cells) -> bool:
    """Every span whose center lies in the row's cells is bold, and there is one."""
    found = False
    for cell in cells:
        if cell is None:
            continue
        x0, y0, x1, y1 = cell
        for (x, y), is_bold in span_boxes:
            if x0 <= x < x1 and y0 <= y < y1:
                if not is_bold:
                    return False
                found = True
    return found


def _center(box) -> tuple[float, float]:
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2, (y0 + y1) / 2


def _is_bold(span: dict) -> bool:
    return bool(span.get("flags", 0) & _BOLD) or "bold" in span.get("font", "").lower()


def _is_mono(span: dict) -> bool:
    font = span.get("font", "").lower()
    return bool(span.get("flags", 0) & _MONO) or any(name in font for name in _MONO_NAMES)


def _is_visible(span: dict) -> bool:
    if span.get("alpha", 255) == 0:
        return False
    flags = span.get("char_flags")
    return flags is None or bool(flags & (_FILLED | _STROKED))
