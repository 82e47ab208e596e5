"""Spans of a PDF text layer -> lines with their text, then paragraphs.

A line is one mupdf line: its spans joined as drawn, the spaces mupdf synthesised kept, and
a space put between two spans that are set apart without one (gap over `SPACE_GAP` of the
font size). Runs of spaces collapse to one, except in monospaced lines (code keeps them).

Lines mupdf split on one baseline (a loosely justified line) are joined again.

A paragraph is a run of lines of one mupdf block, cut where mupdf's grouping is too coarse:
where the style changes (size, bold, monospace), where a line starts a list item, where
a line does not overlap the one above it horizontally (two things side by side that mupdf
put in one block), or where the gap to the line above is more than `PARAGRAPH_GAP` line
heights. Lines join with a space; a word hyphenated at a line end ("infor-" + "mation")
is joined back when the next line starts in lower case, and a soft hyphen always is.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from loaders.page import TextSpan

SPACE_GAP = 0.2  # a gap between spans wider than this x the font size is a space
PARAGRAPH_GAP = 0.8  # a vertical gap over this x the line height starts a paragraph
MONO_ADVANCE = 0.6  # the advance of a monospaced glyph, in font sizes (for indentation)
JOIN_GAP = 2.0  # lines on one baseline this close (x the font size) are one line

BULLET = re.compile(r"^\s*([\u2022\u25e6\u25aa\u25cf\u2023\u2043\u00b7\u2013\u25a0*\-])\s+(.*)$",
                    re.S)
NUMBERED = re.compile(r"^\s*(\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})[.)])\s+(.*)$", re.S)
_SPACES = re.compile(r"\s+")
_SOFT_HYPHEN = "\u00ad"


@dataclass
class Line:
    """One line of the text layer, in points on the displayed page."""

    text: str
    bbox: tuple[float, float, float, float]
    size: float  # the size carrying most of its characters
    is_bold: bool
    is_mono: bool
    block: int  # mupdf's block number
    numbers: tuple[int, ...] = (0,)  # mupdf's line numbers in the block (several if joined)
    spans: list[TextSpan] = field(default_factory=list)

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def style(self) -> tuple[float, bool, bool]:
        return round(self.size * 2) / 2, self.is_bold, self.is_mono


@dataclass
class Paragraph:
    """Lines that read as one unit (a paragraph, a heading, a list item, a code block)."""

    lines: list[Line]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return union([line.bbox for line in self.lines])

    @property
    def size(self) -> float:
        weights: Counter[float] = Counter()
        for line in self.lines:
            weights[round(line.size * 2) / 2] += len(line.text)
        return weights.most_common(1)[0][0] if weights else 0.0

    @property
    def is_bold(self) -> bool:
        return all(line.is_bold for line in self.lines)

    @property
    def is_mono(self) -> bool:
        return all(line.is_mono for line in self.lines)

    @property
    def text(self) -> str:
        """The lines joined by spaces, hyphenated words joined back."""
        out = ""
        for line in self.lines:
            part = line.text.strip()
            if not part:
                continue
            if out.endswith(_SOFT_HYPHEN):
                out = out[:-1] + part
            elif len(out) > 1 and out.endswith("-") and out[-2].isalpha() and part[0].islower():
                out = out[:-1] + part
            else:
                out = f"{out} {part}" if out else part
        return out.replace(_SOFT_HYPHEN, "")

    def code_text(self) -> str:
        """The lines one per line, indented by their offset in glyph widths (code)."""
        left = min(line.bbox[0] for line in self.lines)
        out = []
        for line in self.lines:
            advance = max(line.size * MONO_ADVANCE, 0.1)
            indent = round((line.bbox[0] - left) / advance)
            out.append(" " * indent + line.text.strip())
        return "\n".join(out)


def page_lines(spans: list[TextSpan]) -> list[Line]:
    """The text layer's lines, in mupdf's order, with their text spaced (module docstring)."""
    grouped: dict[tuple[int, int], list[TextSpan]] = {}
    for span in spans:
        grouped.setdefault((span.block, span.line), []).append(span)
    lines = []
    for (block, number), line_spans in grouped.items():
        inked = [s for s in line_spans if s.text.strip()]
        if not inked:
            continue
        is_mono = all(s.is_mono for s in inked)
        lines.append(Line(
            text=_line_text(line_spans, is_mono),
            bbox=union([s.bbox for s in inked]),
            size=_main_size(inked),
            is_bold=all(s.is_bold for s in inked),
            is_mono=is_mono,
            block=block,
            numbers=(number,),
            spans=line_spans,
        ))
    return lines


def join_split_lines(lines: list[Line]) -> list[Line]:
    """Join lines mupdf split on one baseline (a loosely justified line, where the gaps
    between words grew past mupdf's limit): same block, overlapping vertically by half,
    the next starting right of the previous within `JOIN_GAP` x the font size."""
    out: list[Line] = []
    for line in lines:
        previous = out[-1] if out else None
        if previous is not None and previous.block == line.block and (
            0 <= line.bbox[0] - previous.bbox[2] <= JOIN_GAP * max(line.size, previous.size)
        ) and _overlap(previous.bbox, line.bbox, 1) >= 0.5 * min(previous.height, line.height):
            spans = [*previous.spans, *line.spans]
            out[-1] = Line(
                text=f"{previous.text} {line.text}", bbox=union([previous.bbox, line.bbox]),
                size=_main_size([s for s in spans if s.text.strip()]),
                is_bold=previous.is_bold and line.is_bold,
                is_mono=previous.is_mono and line.is_mono,
                block=line.block, numbers=previous.numbers + line.numbers, spans=spans,
            )
        else:
            out.append(line)
    return out


def paragraphs(lines: list[Line]) -> list[Paragraph]:
    """Lines -> paragraphs (rules in the module docstring); lines keep their order.

    Code split over several mupdf blocks (mupdf starts a block where the indentation
    changes) is one paragraph again: monospaced paragraphs that follow each other within a
    line height and overlap horizontally are joined.
    """
    out: list[Paragraph] = []
    previous: Line | None = None
    for line in lines:
        if previous is None or (_starts_paragraph(previous, line) and not _continues_code(
                out[-1], line)):
            out.append(Paragraph([line]))
        else:
            out[-1].lines.append(line)
        previous = line
    return out


def union(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    """The smallest box holding all `boxes`."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _continues_code(para: Paragraph, line: Line) -> bool:
    last = para.lines[-1]
    return (para.is_mono and line.is_mono and abs(line.size - last.size) < 0.5
            and line.bbox[1] - last.bbox[3] <= max(last.height, line.height)
            and _overlap(para.bbox, line.bbox, 0) > 0)


def _overlap(a: tuple[float, ...], b: tuple[float, ...], axis: int) -> float:
    return min(a[axis + 2], b[axis + 2]) - max(a[axis], b[axis])


def _starts_paragraph(previous: Line, line: Line) -> bool:
    if line.block != previous.block or line.style != previous.style:
        return True
    if BULLET.match(line.text) or (NUMBERED.match(line.text) and not line.is_mono):
        return True
    if line.bbox[0] >= previous.bbox[2] or line.bbox[2] <= previous.bbox[0]:
        return True  # side by side, not one under the other
    gap = line.bbox[1] - previous.bbox[3]
    return gap > PARAGRAPH_GAP * max(previous.height, line.height)


def _line_text(spans: list[TextSpan], is_mono: bool) -> str:
    parts: list[str] = []
    previous: TextSpan | None = None
    for span in spans:
        if previous is not None and parts and not parts[-1][-1:].isspace() and (
            not span.text[:1].isspace()
        ):
            gap = max(span.bbox[0] - previous.bbox[2], span.bbox[1] - previous.bbox[3])
            if gap > SPACE_GAP * max(span.size, previous.size):
                parts.append(" ")
        parts.append(span.text)
        previous = span
    text = "".join(parts)
    return text.rstrip() if is_mono else _SPACES.sub(" ", text).strip()


def _main_size(spans: list[TextSpan]) -> float:
    weights: Counter[float] = Counter()
    for span in spans:
        weights[span.size] += len(span.text.strip())
    return weights.most_common(1)[0][0]
