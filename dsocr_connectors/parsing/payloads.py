"""Typed payloads of blocks: tables (also the table written after its caption), equations,
figures with their captions.

Works on typed blocks in reading order and changes them in place (or, for the caption
quirk, returns a reordered list); it never drops text: moved HTML goes from one block's
content to another's.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import Block, BlockType, Equation, Figure
from dsocr_connectors.parsing.tables import STRUCTURAL_FLAGS, parse_table

CAPTION_TYPES = (BlockType.TABLE_CAPTION, BlockType.TABLE_FOOTNOTE, BlockType.FIGURE_CAPTION)
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)


def strip_center(text: str) -> str:
    return _CENTER_RE.sub("", text).strip()


def move_caption_tables(blocks: list[Block]) -> list[Block]:
    """Give table HTML written after a caption to the empty table block emitted before it.

    The model emits `table` (no content), then `table_caption` with its text, then the
    table's HTML. The HTML moves to the table block, which is placed right after the
    caption (caption above table: the order the text was written in).
    """
    blocks = list(blocks)
    i = 0
    while i < len(blocks):
        caption = blocks[i]
        at = caption.content.find("<table")
        if caption.type in CAPTION_TYPES and at >= 0:
            for j in range(i - 1, max(-1, i - 4), -1):
                table = blocks[j]
                if table.type is BlockType.TABLE and not table.content:
                    table.content = caption.content[at:].strip()
                    caption.content = caption.content[:at].strip()
                    table.flags = sorted({*table.flags, "html_from_caption"})
                    blocks.insert(i, blocks.pop(j))
                    break
        i += 1
    return blocks


def _table_html(content: str) -> str | None:
    at = content.find("<table")
    if at >= 0:
        return content[at:]
    if any(tag in content for tag in ("<td", "<tr", "</td", "</tr", "<th")):
        return content
    return None


def _equation(content: str) -> Equation:
    text = content.strip()
    for opening, closing, display in (
        ("\\[", "\\]", True),
        ("$$", "$$", True),
        ("\\(", "\\)", False),
    ):
        if text.startswith(opening) and text.endswith(closing) and len(text) >= 2 * len(opening):
            return Equation(latex=text[len(opening) : -len(closing)].strip(), display=display)
    return Equation(latex=text, display=True)


def attach_payloads(blocks: list[Block]) -> None:
    """Tables, equations and figures (with the caption that follows) as typed payloads."""
    for i, block in enumerate(blocks):
        if block.type is BlockType.TABLE or (
            block.type is BlockType.UNKNOWN and block.content.startswith("<table")
        ):
            html = _table_html(block.content)
            if html is not None:
                block.table = parse_table(html)
                if STRUCTURAL_FLAGS & set(block.table.flags):
                    block.flags = sorted({*block.flags, "malformed_table"})
        elif block.type is BlockType.EQUATION and block.content:
            block.equation = _equation(block.content)
        elif block.type is BlockType.FIGURE:
            caption = None
            for other in blocks[i + 1 : i + 3]:
                if other.type is BlockType.FIGURE:
                    break
                if other.type is BlockType.FIGURE_CAPTION:
                    caption = strip_center(other.content) or None
                    break
            block.figure = Figure(caption=caption)
