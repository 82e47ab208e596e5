"""Block -> text for chunks: the Markdown a chunk is made of, one block at a time.

Chunk text is built here, block by block, so that a chunk's text is exactly the sum of its
units and a table part renders with its header rows. It does not try to be the document
exporter (`dsocr_connectors.export`); it renders what retrieval needs: headings with their
level, tables as Markdown grids (spans repeated so every row reads on its own), equations as
display LaTeX, figures by their caption, charts by their data, SMILES verbatim.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import Block, BlockType, Table
from dsocr_connectors.export.markdown import cut_content
from dsocr_connectors.parsing.table_loops import cut_table_loop

HEADING_TYPES = (BlockType.TITLE, BlockType.SECTION_HEADING)
_HASHES = re.compile(r"^\s*#{1,6}\s+")
CENTER_TAGS = re.compile(r"</?center>", re.IGNORECASE)


def heading_text(block: Block) -> str:
    """The heading's words: the content without Markdown `#` marks or `<center>` tags."""
    return _HASHES.sub("", CENTER_TAGS.sub("", block.content)).strip()


def heading_level(block: Block) -> int:
    """The heading's level: the block's own, else 1 for a title and 2 for a section heading."""
    if block.heading_level is not None:
        return max(1, min(6, block.heading_level))
    return 1 if block.type == BlockType.TITLE else 2


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def table_lines(table: Table) -> tuple[list[str], list[str]]:
    """A Markdown pipe table as (header lines, one line per body row).

    Spanned cells repeat their text so every row line reads on its own; header rows are
    merged into one header line (distinct texts per column joined by " / "). A table with
    no header rows gets an empty header line, as Markdown needs one.
    """
    rows = table.grid(fill_spans=True)
    if not rows or table.num_cols == 0:
        return [], []
    count = table.header_rows
    if count:
        head = [" / ".join(dict.fromkeys(r[c] for r in rows[:count] if r[c]))
                for c in range(table.num_cols)]
    else:
        head = [""] * table.num_cols
    header = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * table.num_cols]
    body = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows[count:]]
    return header, body


def table_markdown(table: Table) -> str:
    """The table as a Markdown pipe table (see `table_lines`); "" for an empty grid."""
    header, body = table_lines(table)
    return "\n".join(header + body)


def table_html(table: Table) -> str:
    """Clean HTML built from the cells (spans kept, `<th>` for header cells)."""
    return table.to_html()


def _chart_text(block: Block) -> str:
    """A chart as its title and its data: the table when there is one, else the series."""
    chart = block.chart
    assert chart is not None
    lines = ["Chart: " + " - ".join(t for t in (chart.title, chart.chart_type) if t)
             if chart.title or chart.chart_type else "Chart data"]
    if chart.units:
        lines.append(f"units: {chart.units}")
    if block.table is not None and (table := table_markdown(block.table)):
        return "\n".join([*lines, table])
    if chart.categories:
        lines.append("categories: " + ", ".join(chart.categories))
    for series in chart.series:
        shown = series.raw_values or ["" if v is None else f"{v:g}" for v in series.values]
        lines.append(f"{series.name}: " + ", ".join(shown))
    return "\n".join(lines)


def block_text(block: Block, *, with_caption: bool = True) -> str:
    """The Markdown of one block as it goes into a chunk.

    Args:
        block: the block.
        with_caption: render a figure's caption (False when the caption is a block too).

    Returns:
        The text; "" for a block with nothing to read (its boxes still count).
    """
    if "repeated_block" in block.flags:  # a whole block repeating an earlier one
        return ""
    if block.type in HEADING_TYPES:
        text = heading_text(block)
        return "#" * heading_level(block) + " " + text if text else ""
    if block.chart is not None:  # before tables: a chart's data also rides as a table
        return _chart_text(block)
    if block.table is not None:
        if "hallucinated" in block.table.flags:  # markup tokens only: nothing to read
            return ""
        return table_markdown(cut_table_loop(block.table)) or cut_content(block).strip()
    if block.equation is not None:
        number = f" \\tag{{{block.equation.number}}}" if block.equation.number else ""
        return f"$$\n{block.equation.latex.strip()}{number}\n$$"
    if block.chemistry is not None:
        return f"SMILES: {block.chemistry.smiles}"
    if block.type == BlockType.FIGURE:
        caption = block.figure.caption if block.figure else None
        body = cut_content(block).strip()
        shown = f"Figure: {caption}" if caption and with_caption else ""
        return "\n".join(t for t in (body, shown) if t)
    return CENTER_TAGS.sub("", cut_content(block)).strip()
