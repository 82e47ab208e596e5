"""The visible text of a block's content, each character tied to where it sits in the content.

A model block's content is Markdown with HTML tables and LaTeX; only its text is compared
with the PDF text layer, and only text is ever replaced, so the markup stays as it was:
- Markdown marks are left out: `#` heading marks (in headings), `-`/`*`/`+` bullets and
  `>` at a line's start, code fences, `**`/`__`, the backslash of an escape;
- HTML tags are left out; a table cell or row boundary (and `<br>`) is a `CELL` mark,
  which a correction never crosses; entities (`&amp;`) count as the character they stand
  for, and a correction writes them back escaped;
- LaTeX (`\\(...\\)`, `\\[...\\]`, `$$...$$`) is one `MATH` mark: never compared, never edited;
- a run of whitespace is one space, editable only when it is a single plain space.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

MATH = "\x1e"  # stands for a formula
CELL = "\x1f"  # a table cell boundary
NOT_EDITABLE = (-1, -1)

_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)\b[^<>]*>")
_ENTITY = re.compile(r"&(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
_LINE_MARK = re.compile(r"(#{1,6}[ \t]+|[-*+][ \t]+|>[ \t]?|```[^\n]*)")
_BOUNDARY_TAGS = {"td", "th", "tr", "br", "table", "thead", "tbody", "p", "div", "li"}
_MATH_DELIMITERS = (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"))
_ESCAPABLE = set("\\`*_{}[]()#+-.!|<>~")
# characters that never start markup mid-line, and single spaces between them
_PLAIN = re.compile(r"(?:[^\s<&\\*_$]| (?=[^\s<&\\*_$]))*")


@dataclass
class Visible:
    """The visible characters of a content string and, per character, its source range."""

    text: str = ""
    sources: list[tuple[int, int]] = field(default_factory=list)


class _Builder:
    """Collects visible characters; whitespace and cell marks collapse as they come."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.sources: list[tuple[int, int]] = []

    def add(self, char: str, source: tuple[int, int]) -> None:
        if char in (" ", CELL) and (not self.chars or self.chars[-1] in (" ", CELL)):
            if self.chars and char == CELL:  # a boundary wins over the space before it
                self.chars[-1], self.sources[-1] = CELL, NOT_EDITABLE
            return
        self.chars.append(char)
        self.sources.append(source)

    def add_run(self, content: str, start: int, end: int) -> None:
        """Plain characters content[start:end], each its own source."""
        self.chars.extend(content[start:end])
        self.sources.extend((k, k + 1) for k in range(start, end))

    def visible(self) -> Visible:
        start, end = 0, len(self.chars)
        while start < end and self.chars[start] in (" ", CELL):
            start += 1
        while end > start and self.chars[end - 1] in (" ", CELL):
            end -= 1
        return Visible("".join(self.chars[start:end]), self.sources[start:end])


def visible_text(content: str, *, heading_marks: bool = False) -> Visible:
    """The visible text of `content` (rules in the module docstring).

    Args:
        content: a block's content.
        heading_marks: `#` at a line's start is a heading mark (heading blocks); elsewhere
            it is text (a code comment).
    """
    out = _Builder()
    i, n = 0, len(content)
    line_start = True
    while i < n:
        char = content[i]
        if line_start:
            line_start = False
            mark = _LINE_MARK.match(content, i)
            if mark and (heading_marks or not mark.group(0).startswith("#")):
                i = mark.end()
                continue
        if char.isspace():
            j = i
            while j < n and content[j].isspace():
                j += 1
            out.add(" ", (i, j) if content[i:j] == " " else NOT_EDITABLE)
            line_start = "\n" in content[i:j]
            i = j
            continue
        if char == "<":
            tag = _TAG.match(content, i)
            if tag:
                if tag.group(1).lower() in _BOUNDARY_TAGS:
                    out.add(CELL, NOT_EDITABLE)
                i = tag.end()
                continue
        if char == "&":
            entity = _ENTITY.match(content, i)
            if entity:
                decoded = html.unescape(entity.group(0))
                source = (i, entity.end()) if len(decoded) == 1 else NOT_EDITABLE
                for c in decoded:
                    out.add(c, source)
                i = entity.end()
                continue
        math_end = _math_end(content, i)
        if math_end is not None:
            out.add(MATH, NOT_EDITABLE)
            i = math_end
            continue
        if char == "\\" and i + 1 < n and content[i + 1] in _ESCAPABLE:
            out.add(content[i + 1], (i, i + 2))
            i += 2
            continue
        if content.startswith(("**", "__"), i):
            i += 2
            continue
        plain = _PLAIN.match(content, i + 1)  # the run of ordinary characters after this one
        out.add_run(content, i, plain.end())
        i = plain.end()
    return out.visible()


def _math_end(content: str, i: int) -> int | None:
    """Where a formula opening at `i` ends (the content's end when it is never closed)."""
    for opening, closing in _MATH_DELIMITERS:
        if content.startswith(opening, i):
            end = content.find(closing, i + len(opening))
            return len(content) if end < 0 else end + len(closing)
    return None
