"""Plain text -> chunks, for text that comes without the structured `dsocr` payload.

The text is read as Markdown just far enough to keep the chunker's rules: blank lines
separate paragraphs, `#` lines are headings (their level is the number of marks), a fenced
code block or a `$$` display equation is one atomic piece, and a run of `|` lines is a pipe
table (split by rows with its header repeated when too large). No boxes are invented.
"""

from __future__ import annotations

import re
from typing import Any

from dsocr_connectors.document import (
    Block,
    BlockType,
    Document,
    Equation,
    Page,
    Table,
    TableCell,
)
from splitters.chunk import Chunk
from splitters.chunker import chunk_document

_HEADING = re.compile(r"^(#{1,6})\s+\S")
_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def pipe_table(lines: list[str]) -> Table:
    """A `Table` from Markdown pipe-table lines; the line before a `|---|` rule is the header."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header_rows = 0
    if len(lines) > 1 and _RULE.match(lines[1].strip()):
        rows.pop(1)
        header_rows = 1
    num_cols = max(len(r) for r in rows)
    cells = [TableCell(row=r, col=c, text=text, is_header=r < header_rows)
             for r, row in enumerate(rows) for c, text in enumerate(row)]
    return Table(num_rows=len(rows), num_cols=num_cols, cells=cells, header_rows=header_rows,
                 html="")


def _pieces(text: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) pieces: heading, code, equation, table or text."""
    lines = text.replace("\r\n", "\n").split("\n")
    pieces: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        for kind, opens, closes in (("code", "```", "```"), ("equation", "$$", "$$")):
            if stripped.startswith(opens):
                end = i
                if not (len(stripped) > len(opens) and stripped.endswith(closes)):
                    end = i + 1
                    while end < len(lines) and not lines[end].strip().endswith(closes):
                        end += 1
                pieces.append((kind, lines[i:end + 1]))
                i = end + 1
                break
        else:
            if _HEADING.match(stripped):
                pieces.append(("heading", [stripped]))
                i += 1
                continue
            end = i
            is_table = stripped.startswith("|")
            while end < len(lines) and lines[end].strip() and not (
                end > i and (_HEADING.match(lines[end].strip())
                             or lines[end].strip().startswith(("```", "$$"))
                             or lines[end].strip().startswith("|") != is_table)):
                end += 1
            pieces.append(("table" if is_table else "text", lines[i:end]))
            i = end
    return pieces


def text_blocks(text: str) -> list[Block]:
    """Blocks of a Markdown-ish text: headings, equations, code, tables, paragraphs."""
    blocks: list[Block] = []
    for kind, lines in _pieces(text):
        content = "\n".join(lines).strip()
        fields: dict[str, Any] = {"index": len(blocks), "label": "", "content": content}
        if kind == "heading":
            level = len(content) - len(content.lstrip("#"))
            kind_type = BlockType.TITLE if level == 1 else BlockType.SECTION_HEADING
            blocks.append(Block(type=kind_type, heading_level=level, **fields))
        elif kind == "equation":
            latex = content.strip("$").strip()
            blocks.append(Block(type=BlockType.EQUATION, equation=Equation(latex=latex),
                                **fields))
        elif kind == "table":
            blocks.append(Block(type=BlockType.TABLE, table=pipe_table(lines), **fields))
        else:
            blocks.append(Block(type=BlockType.TEXT, **fields))
    return blocks


def chunk_text(text: str, *, source: str = "", page: int = 1, **options: Any) -> list[Chunk]:
    """Chunk a plain (Markdown) text with the same rules and options as `chunk_document`.

    Args:
        text: the text.
        source: the source name the chunks carry.
        page: the page number the chunks carry.
        **options: `chunk_document` options (chunk_size, chunk_overlap, length, by).

    Returns:
        The chunks; they have no boxes.
    """
    doc = Document(source=source, pages=[Page(number=page, blocks=text_blocks(text))])
    return chunk_document(doc, **options)
