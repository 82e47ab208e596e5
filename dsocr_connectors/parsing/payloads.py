"""Typed payloads of blocks: tables (also the table written after its caption, and several
tables in one block), equations with their numbers, figures with their captions.

Works on typed blocks in reading order and changes them in place (or, for the caption
quirk and for splitting, returns a new list); it never drops text: moved HTML goes from one
block's content to another's, and a split block's pieces together hold its content.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import Block, BlockType, Equation, Figure, Repair
from dsocr_connectors.parsing.labels import heading_level
from dsocr_connectors.parsing.plain import classify
from dsocr_connectors.parsing.tables import STRUCTURAL_FLAGS, parse_table

CAPTION_TYPES = (BlockType.TABLE_CAPTION, BlockType.TABLE_FOOTNOTE, BlockType.FIGURE_CAPTION)
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)
_TABLE_TAG_RE = re.compile(r"<table\b[^<>]*>|</table\s*>", re.IGNORECASE)
_FILLER_RE = re.compile(r"<br\s*/?>|\s", re.IGNORECASE)
# An equation number at the end of a formula: `\tag{3}`, or `(3)`, `(3.1a)`, `(A.2)` after
# spacing (`\quad`, `\qquad`, `\hfill`, `~`, `\,`...). A bare `(3)` is not a number: `(a+b)(3)`.
_NUMBER_RE = re.compile(
    r"(?:\\tag\*?\{\s*(?P<tag>[^{}]{1,24}?)\s*\}"
    r"|(?:\\q?quad\b|\\hfill\b|\\hspace\*?\{[^{}]*\}|~|\\[ ,;:!])+\s*"
    r"\(\s*(?P<paren>\d{1,4}(?:[.\-–]\d{1,4})*[a-z]?|[A-Z][.\-]?\d{1,4}(?:[.\-]\d{1,4})*)\s*\))"
    r"\s*$"
)


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


def table_segments(content: str) -> list[str]:
    """`content` cut into pieces, each a top-level `<table>..</table>` or the text between.

    A piece of only whitespace and `<br>` joins the piece before it (or after it, first).
    The pieces, concatenated, are `content`.
    """
    pieces: list[str] = []
    depth, start = 0, 0
    for match in _TABLE_TAG_RE.finditer(content):
        if not match.group().startswith("</"):
            if depth == 0 and match.start() > start:
                pieces.append(content[start : match.start()])
                start = match.start()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                pieces.append(content[start : match.end()])
                start = match.end()
    if start < len(content):
        pieces.append(content[start:])
    merged: list[str] = []
    for piece in pieces:
        if merged and not _FILLER_RE.sub("", piece):
            merged[-1] += piece
        elif merged and not _FILLER_RE.sub("", merged[-1]):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def split_table_blocks(blocks: list[Block]) -> list[Block]:
    """One block per table: a table or unknown block holding several `<table>`s, or text
    around its table, becomes several blocks with its label and boxes (flag `split_block`);
    text pieces are typed by their shape (`plain.classify`)."""
    result: list[Block] = []
    for block in blocks:
        is_tabular = block.type in (BlockType.TABLE, BlockType.UNKNOWN)
        pieces = table_segments(block.content) if is_tabular and "<table" in block.content.lower() else []
        if len(pieces) < 2:
            result.append(block)
            continue
        for i, piece in enumerate(pieces):
            content = piece.strip()
            kind = block.type if content.lower().startswith("<table") else classify(content)
            result.append(
                block.model_copy(
                    update={
                        "type": kind,
                        "content": content,
                        "flags": sorted({*block.flags, "split_block"}),
                        "repairs": list(block.repairs) if i == 0 else [],  # recorded once
                        "heading_level": heading_level(kind, content),
                    }
                )
            )
    return result


def _table_html(content: str) -> str | None:
    at = content.find("<table")
    if at >= 0:
        return content[at:]
    if any(tag in content for tag in ("<td", "<tr", "</td", "</tr", "<th")):
        return content
    return None


def split_number(latex: str) -> tuple[str, str | None]:
    """(formula, number) for LaTeX that may end in an equation number (`_NUMBER_RE`)."""
    match = _NUMBER_RE.search(latex)
    if match is None or not latex[: match.start()].strip():
        return latex, None
    return latex[: match.start()].rstrip(), match.group("tag") or match.group("paren")


def _equation(content: str) -> Equation:
    text = content.strip()
    for opening, closing, display in (
        ("\\[", "\\]", True),
        ("$$", "$$", True),
        ("\\(", "\\)", False),
    ):
        if text.startswith(opening) and text.endswith(closing) and len(text) >= 2 * len(opening):
            latex, number = split_number(text[len(opening) : -len(closing)].strip())
            return Equation(latex=latex, display=display, number=number)
    if "\\[" in text or "$$" in text:
        return Equation(latex=text, display=True)
    latex, number = split_number(text)
    return Equation(latex=latex, display=True, number=number)


def attach_payloads(blocks: list[Block]) -> None:
    """Tables, equations and figures (with the caption that follows) as typed payloads."""
    for i, block in enumerate(blocks):
        if block.type is BlockType.TABLE or (
            block.type is BlockType.UNKNOWN and block.content.lower().startswith("<table")
        ):
            html = _table_html(block.content)
            if html is not None:
                block.table = parse_table(html)
                if STRUCTURAL_FLAGS & set(block.table.flags):
                    block.flags = sorted({*block.flags, "malformed_table"})
                if "hallucinated" in block.table.flags:
                    block.flags = sorted({*block.flags, "hallucinated_table"})
                    reason = "the table holds only markup tokens, no text"
                    block.repairs.append(Repair(kind="table_dropped", text=reason))
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
