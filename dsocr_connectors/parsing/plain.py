"""Outputs without grounding tags (`Free OCR.`, `Describe...`, `Parse the figure.`, broken
prompts): text -> paragraphs, each paragraph typed by its Markdown shape.

A paragraph is a run of lines between blank lines. A paragraph that starts with `#` is a
section heading (its level is the `#` count), one that starts with `<table` a table, one that
is a display formula (`\\[..\\]`, `$$..$$`) an equation, anything else text. When the text ends
in a loop, the paragraphs from the one where the loop begins to the end stay one block, so
the loop offset can be given within it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from dsocr_connectors.document import BlockType
from dsocr_connectors.parsing.labels import markdown_heading_level
from dsocr_connectors.parsing.repetition import Loop, text_loop

_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")


def classify(content: str) -> BlockType:
    """The block type of a paragraph of untagged text, from its Markdown shape."""
    text = content.strip()
    if markdown_heading_level(text):
        return BlockType.SECTION_HEADING
    if text.lower().startswith("<table"):
        return BlockType.TABLE
    if (text.startswith("\\[") and text.endswith("\\]")) or (
        text.startswith("$$") and text.endswith("$$") and len(text) > 3
    ):
        return BlockType.EQUATION
    return BlockType.TEXT


def paragraphs(text: str) -> list[tuple[int, str]]:
    """(offset, paragraph) pairs, paragraphs stripped, empty ones dropped."""
    found = []
    start = 0
    for match in _BLANK_LINE_RE.finditer(text):
        found.append((start, text[start : match.start()]))
        start = match.end()
    found.append((start, text[start:]))
    result = []
    for offset, paragraph in found:
        stripped = paragraph.strip()
        if stripped:
            result.append((offset + paragraph.index(stripped[0]), stripped))
    return result


def plain_contents(text: str) -> list[tuple[str, Loop | None]]:
    """(content, loop) per block of untagged text; a final loop has offsets in its content."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces = paragraphs(text)
    loop = text_loop(text)
    if loop is None:
        return [(content, None) for _, content in pieces]
    result: list[tuple[str, Loop | None]] = []
    for i, (offset, content) in enumerate(pieces):
        next_offset = pieces[i + 1][0] if i + 1 < len(pieces) else len(text)
        if next_offset <= loop.offset:
            result.append((content, None))
            continue
        tail = text[offset:].strip()
        shift = min(offset, loop.offset)
        moved = replace(loop, offset=loop.offset - shift, end=loop.end - shift)
        result.append((tail, moved))
        break
    return result
