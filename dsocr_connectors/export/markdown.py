"""Pages and documents -> Markdown.

One Markdown paragraph per block in reading order. Headings get `#` marks from their level
when the model wrote none; captions lose their `<center>` wrappers; tables are written as
HTML (default, keeps spans) or pipe tables; figures become `![figure](path)` when a crop
path is known (`Figure.crop_path`) or an `image_dir` is given (the crop name that
`preview.save_figure_crops` uses). Loops are cut by default: text from a block's
`loop_start:N` on and blocks flagged `repeated_block` are left out, and an HTML comment
says so; `loops="keep"` writes everything.
"""

from __future__ import annotations

import re
from typing import Literal

from dsocr_connectors.document import Block, BlockType, Document, Page, Table

PAGE_SPLIT = "\n\n<--- Page Split --->\n\n"
LOOP_NOTE = "<!-- repetition: the model looped here; the rest is cut -->"
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)


def figure_crop_name(page: Page, block: Block) -> str:
    """File name used for the crop of a figure block."""
    return f"page-{page.number:04d}-block-{block.index:03d}.png"


def loop_offset(block: Block) -> int | None:
    """The `loop_start:N` offset of a block, if it has one."""
    for flag in block.flags:
        if flag.startswith("loop_start:"):
            return int(flag.split(":", 1)[1])
    return None


def cut_table_loop(table: Table) -> Table:
    """A copy of `table` without the looped rows (`loop_start_row:N`), or `table` itself."""
    rows = [f for f in table.flags if f.startswith("loop_start_row:")]
    if not rows:
        return table
    keep = int(rows[0].split(":", 1)[1])
    cells = [
        c.model_copy(update={"row_span": min(c.row_span, keep - c.row)})
        for c in table.cells
        if c.row < keep
    ]
    return table.model_copy(update={"cells": cells, "num_rows": keep})


def _figure(page: Page, block: Block, image_dir: str | None) -> str:
    path = block.figure.crop_path if block.figure else None
    if path is None and image_dir is not None:
        path = f"{image_dir.rstrip('/')}/{figure_crop_name(page, block)}"
    return f"![figure]({path})" if path else ""


def _figure_payloads(block: Block, tables: Literal["html", "pipe"]) -> list[str]:
    """What a second read found in a figure: chart data, SMILES, geometry or a description."""
    parts = []
    if block.chart is not None:
        title = f"Chart: {block.chart.title}" if block.chart.title else "Chart data"
        parts.append(f"*{title}*")
        if block.table is not None:
            parts.append(block.table.to_html() if tables == "html" else block.table.to_markdown())
    if block.chemistry is not None:
        chem = block.chemistry
        note = {True: "", False: " (invalid SMILES)", None: " (not validated)"}[chem.is_valid]
        parts.append(f"SMILES: `{chem.canonical_smiles or chem.smiles}`{note}")
    if block.geometry is not None:
        g = block.geometry
        points = ", ".join(f"{k} {v}" for k, v in g.points.items())
        parts.append(f"Geometry: {len(g.segments)} segments, {len(g.circles)} circles"
                     + (f"; points {points}" if points else ""))
    if block.figure is not None and block.figure.description:
        parts.append(block.figure.description.strip())
    return parts


def block_to_markdown(
    page: Page,
    block: Block,
    *,
    tables: Literal["html", "pipe"] = "html",
    image_dir: str | None = None,
    loops: Literal["cut", "keep"] = "cut",
) -> str:
    """The Markdown of one block ("" when it has nothing to show)."""
    content = block.content
    note = ""
    offset = loop_offset(block)
    if loops == "cut" and offset is not None:
        content, note = content[:offset].rstrip(), "\n\n" + LOOP_NOTE
    if block.type is BlockType.FIGURE:
        parts = [_figure(page, block, image_dir), *_figure_payloads(block, tables)]
        text = "\n\n".join(p for p in parts if p)
    elif block.table is not None and block.table.num_cols:
        table = block.table
        if loops == "cut" and "repetition" in table.flags:
            table, note = cut_table_loop(table), "\n\n" + LOOP_NOTE
        rendered = table.to_html() if tables == "html" else table.to_markdown()
        before = content[: content.find("<table")].strip() if "<table" in content else ""
        text = f"{before}\n\n{rendered}" if before else rendered
    elif block.type in (BlockType.TITLE, BlockType.SECTION_HEADING) and content:
        marks = "#" * (block.heading_level or 1)
        text = content if content.startswith("#") else f"{marks} {content}"
    else:
        text = _CENTER_RE.sub("", content).strip()
    return (text + note).strip()


def page_to_markdown(
    page: Page,
    *,
    tables: Literal["html", "pipe"] = "html",
    image_dir: str | None = None,
    loops: Literal["cut", "keep"] = "cut",
    page_separator: str = PAGE_SPLIT,
) -> str:
    """The Markdown of one page (`page_separator` is used by `document_to_markdown` only).

    Args:
        page: the parsed page.
        tables: "html" keeps spans; "pipe" writes Markdown pipe tables.
        image_dir: where figure crops are (or will be) saved, for `![figure](..)` links.
        loops: "cut" leaves looped text out (with a note), "keep" writes it all.
        page_separator: accepted so one set of options serves pages and documents.
    """
    parts: list[str] = []
    previous: Block | None = None
    noted = False
    for block in page.blocks:
        if loops == "cut" and "repeated_block" in block.flags:
            if not noted:
                parts.extend(["\n\n", LOOP_NOTE] if parts else [LOOP_NOTE])
                noted = True
            continue
        text = block_to_markdown(page, block, tables=tables, image_dir=image_dir, loops=loops)
        if not text:
            continue
        lines = previous is not None and previous.type is block.type is BlockType.LINE
        if parts:
            parts.append("\n" if lines else "\n\n")
        parts.append(text)
        previous = block
    return "".join(parts)


def document_to_markdown(
    doc: Document,
    *,
    tables: Literal["html", "pipe"] = "html",
    image_dir: str | None = None,
    loops: Literal["cut", "keep"] = "cut",
    page_separator: str = PAGE_SPLIT,
) -> str:
    """All pages' Markdown joined by `page_separator` (the released `<--- Page Split --->`).

    A table continued across pages (`Block.continued_by`) is written once, whole, where it
    starts; its continuation leaves a note (`dsocr_connectors.deep.table_merge.merged_view`).
    """
    from dsocr_connectors.deep.table_merge import merged_view

    doc = merged_view(doc)
    return page_separator.join(
        page_to_markdown(page, tables=tables, image_dir=image_dir, loops=loops)
        for page in doc.pages
    )
