"""A PDF page's own text: spans with boxes, plain text, tables, and whether it can stand in for OCR.

Coordinates are PDF points on the page as displayed: origin top-left, the page's /Rotate
applied, so they line up with the rendered image (pixels = points * dpi / 72).
mupdf reports text on the unrotated page; `page.rotation_matrix` maps it.

The usability rule (`is_usable_text`) decides whether the text layer alone is good
enough to skip the model: see its docstring and docs/loaders.md.
"""

from __future__ import annotations

import unicodedata

from loaders.mupdf import pymupdf
from loaders.page import LayerTable, TextLayer, TextSpan

MIN_USABLE_CHARS = 20  # visible, clean characters a page needs for its text layer to count
MIN_CLEAN_FRACTION = 0.9  # of visible characters: printable, not U+FFFD, not private-use
MIN_VISIBLE_FRACTION = 0.5  # of all characters: drawn (filled or stroked, not transparent)

_FILLED = 16  # mupdf FZ_STEXT_FILLED / FZ_STEXT_STROKED char flags
_STROKED = 32
_BOLD = 16  # pymupdf span flag bit 4


def extract_text_layer(page: pymupdf.Page) -> TextLayer:
    """Read one page's spans, text and usability (tables: `find_layer_tables`).

    Raises whatever pymupdf raises on a damaged page; the caller reports it.
    """
    rotate = page.rotation_matrix
    spans: list[TextSpan] = []
    lines_text: list[list[str]] = []  # per block, per line
    num_visible = num_clean = num_chars = 0
    for block in page.get_text("dict", sort=False)["blocks"]:
        if block.get("type", 0) != 0:
            continue  # an image block
        block_lines: list[str] = []
        for line_index, line in enumerate(block["lines"]):
            parts: list[str] = []
            for span in line["spans"]:
                text = span["text"]
                if not text:
                    continue
                parts.append(text)
                bbox = pymupdf.Rect(span["bbox"]) * rotate
                spans.append(
                    TextSpan(
                        text=text,
                        bbox=(bbox.x0, bbox.y0, bbox.x1, bbox.y1),
                        font=span.get("font", ""),
                        size=float(span.get("size", 0.0)),
                        is_bold=_is_bold(span),
                        block=block.get("number", 0),
                        line=line_index,
                    )
                )
                chars = [c for c in text if not c.isspace()]
                num_chars += len(chars)
                if _is_visible(span):
                    num_visible += len(chars)
                    num_clean += sum(_is_clean(c) for c in chars)
            block_lines.append("".join(parts))
        lines_text.append(block_lines)
    text = "\n\n".join("\n".join(lines) for lines in lines_text if any(lines))
    return TextLayer(
        spans=spans, text=text, is_usable=is_usable_text(num_chars, num_visible, num_clean)
    )


def is_usable_text(num_chars: int, num_visible: int, num_clean: int) -> bool:
    """Whether a text layer can stand in for OCR, from counts of non-space characters.

    Usable when all three hold:
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
    """
    if num_clean < MIN_USABLE_CHARS:
        return False
    return num_clean >= MIN_CLEAN_FRACTION * num_visible and (
        num_visible >= MIN_VISIBLE_FRACTION * num_chars
    )


def find_layer_tables(page: pymupdf.Page, spans: list[TextSpan]) -> list[LayerTable]:
    """Ruled tables drawn in the page's vector content, with their cell text and header rows.

    Uses pymupdf's line-based finder without its layout model or grid refinement (about
    30 ms for a page with a 100-cell table, instead of 0.1 to 1 s). Cell text is re-read
    from the page's words by cell box: pymupdf's own cell text splits numbers such as
    "1.20" at the decimal point. Header rows are the leading rows set entirely in bold,
    when the rest of the table is not (at most 3).
    """
    try:
        found = page.find_tables(use_layout=False)
    except TypeError:  # pymupdf before its layout model: line-based finding is all it does
        found = page.find_tables()
    if not found.tables:
        return []
    words = _displayed_words(page)
    span_boxes = [(_center(s.bbox), s.is_bold) for s in spans if s.text.strip()]
    tables = []
    for table in found.tables:
        rows = [[_cell_text(words, cell) for cell in row.cells] for row in table.rows]
        bold_rows = [_is_bold_row(span_boxes, row.cells) for row in table.rows]
        header_rows = 0
        while header_rows < min(3, len(rows) - 1) and bold_rows[header_rows]:
            header_rows += 1
        tables.append(LayerTable(bbox=tuple(table.bbox), rows=rows, header_rows=header_rows))
    return tables


def _displayed_words(page: pymupdf.Page) -> list[tuple[tuple[float, float], tuple, str]]:
    rotate = page.rotation_matrix
    words = []
    for w in page.get_text("words", sort=False):
        rect = pymupdf.Rect(w[:4]) * rotate
        words.append((_center(rect), (w[5], w[6], w[7]), w[4]))
    return words


def _cell_text(words, cell) -> str | None:
    if cell is None:
        return None  # covered by a spanning cell
    x0, y0, x1, y1 = cell
    inside = [(order, text) for (x, y), order, text in words if x0 <= x < x1 and y0 <= y < y1]
    return " ".join(text for _, text in sorted(inside))


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


def _is_visible(span: dict) -> bool:
    if span.get("alpha", 255) == 0:
        return False
    flags = span.get("char_flags")
    return flags is None or bool(flags & (_FILLED | _STROKED))


def _is_clean(char: str) -> bool:
    if char == "\ufffd":
        return False
    category = unicodedata.category(char)
    return category not in ("Co", "Cc", "Cn", "Cs")
