"""Pages and documents -> Markdown.

One Markdown paragraph per block in reading order. Headings get `#` marks from their level
when the model wrote none; captions lose their `<center>` wrappers; tables are written as
HTML (default, keeps spans) or pipe tables, with any text the HTML held outside its cells
after them; a table flagged `hallucinated` (only markup tokens) is left out; display
equations are written `$$ latex \\tag{3} $$` from `Block.equation` (`equation_numbers=False`
drops the number); figures become `![figure](path)` when a crop path is known
(`Figure.crop_path`) or an `image_dir` is given (the crop name that
`preview.save_figure_crops` uses), followed by any text the model wrote inside the figure
block as a paragraph. Loops are cut by default (`loops="cut"`): a block's text is written
up to its `loop_cut` repair (one copy of the repeated unit kept, open math, braces and HTML
tags closed), looped table rows and cells and blocks flagged `repeated_block` are left out;
`loop_marker=True` adds an HTML comment where something was cut (connectors that embed the
text pass `loop_marker=False`; the flags and repairs stay on the blocks). `loops="keep"`
writes everything. A failed page opens with a note saying so, why, and (for a page that
needs a model) what to pass: `failed_notes=False` leaves it out (connectors' node text does).
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from dsocr_connectors.document import Block, BlockType, Document, Page, PageStatus, Repair, Table
from dsocr_connectors.parsing.table_loops import cut_table_loop

__all__ = [
    "LOOP_NOTE",
    "PAGE_SPLIT",
    "block_to_markdown",
    "cut_content",
    "cut_table_loop",
    "document_to_markdown",
    "failed_note",
    "figure_crop_name",
    "loop_offset",
    "page_to_markdown",
]

log = logging.getLogger(__name__)
PAGE_SPLIT = "\n\n<--- Page Split --->\n\n"
LOOP_NOTE = "<!-- repetition: the model looped here; the rest is cut -->"
_CENTER_RE = re.compile(r"</?center>", re.IGNORECASE)
_MATH_DELIMITERS = ("\\[", "\\]", "$$", "\\(", "\\)")
# how `Converter` words the reason of a page it could not read without a model (NEEDS_MODEL)
_NEEDS_MODEL = "needs a model"


def figure_crop_name(page: Page, block: Block) -> str:
    """File name used for the crop of a figure block."""
    return f"page-{page.number:04d}-block-{block.index:03d}.png"


def loop_offset(block: Block) -> int | None:
    """The `loop_start:N` offset of a block, if it has one."""
    for flag in block.flags:
        if flag.startswith("loop_start:"):
            return int(flag.split(":", 1)[1])
    return None


def loop_cut(block: Block) -> Repair | None:
    """The block's `loop_cut` repair; for blocks parsed before repairs existed, one made
    from its `loop_start:N` flag (no closers)."""
    for repair in block.repairs:
        if repair.kind == "loop_cut" and repair.offset is not None:
            return repair
    offset = loop_offset(block)
    return None if offset is None else Repair(kind="loop_cut", offset=offset)


def failed_note(page: Page) -> str:
    """The note a failed page's Markdown opens with: which page, why, and what to pass.

    `> **Page 2 was not read**: it needs a model ...` for a page without content, `> **Page 2
    failed**: <reason>. What follows is partial.` for one with partial content.
    """
    reason = (page.reason or "failed").rstrip(".")
    if reason.startswith(_NEEDS_MODEL):
        why = (
            "it needs a model (it has no usable text layer: a scan or an image) and none is "
            "configured. To read it, pass one: `dsocr convert --model DIR` (or set "
            "`$DSOCR_MODEL`), `Converter(model=DIR)`"
        )
    else:
        why = reason
    if any(block.content.strip() or block.table is not None for block in page.blocks):
        return f"> **Page {page.number} failed**: {why}. What follows is partial."
    return f"> **Page {page.number} was not read**: {why}."


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


def cut_content(block: Block) -> str:
    """`block.content` with its loop cut applied: the text up to the cut, plus the closers
    the cut records (`block.content` itself when the block has no loop). For renderers of
    block text other than this module (chunkers, connectors)."""
    repair = loop_cut(block)
    if repair is None or repair.offset is None:
        return block.content
    return block.content[: repair.offset].rstrip() + (repair.text or "")


def _table(block: Block, content: str, tables: Literal["html", "pipe"], cut: bool) -> tuple[str, bool]:
    """The Markdown of a table block, and whether looped rows or cells were left out."""
    table: Table = block.table  # type: ignore[assignment]
    if "hallucinated" in table.flags:
        return "", False
    if not table.num_cols and not table.outside_text:
        return _CENTER_RE.sub("", content).strip(), False
    is_cut = cut and "repetition" in table.flags
    if is_cut:
        table = cut_table_loop(table)
    rendered = "" if not table.num_cols else table.to_html() if tables == "html" else table.to_markdown()
    before = content[: content.lower().find("<table")].strip() if "<table" in content.lower() else ""
    parts = [before, rendered, *table.outside_text]
    return "\n\n".join(p for p in parts if p), is_cut


def _equation(block: Block, content: str, numbers: bool) -> str:
    """`$$ latex \\tag{n} $$` for a delimited formula; else (text, mixed) its content."""
    equation = block.equation
    delimited = content.lstrip().startswith(("\\[", "$$", "\\("))
    if equation is None or not delimited or any(d in equation.latex for d in _MATH_DELIMITERS):
        return content.strip()
    tag = f" \\tag{{{equation.number}}}" if numbers and equation.number else ""
    return f"$$\n{equation.latex}{tag}\n$$"


def block_to_markdown(
    page: Page,
    block: Block,
    *,
    tables: Literal["html", "pipe"] = "html",
    image_dir: str | None = None,
    loops: Literal["cut", "keep"] = "cut",
    loop_marker: bool = True,
    equation_numbers: bool = True,
) -> str:
    """The Markdown of one block ("" when it has nothing to show); options as `page_to_markdown`."""
    content = block.content
    is_cut = False
    if loops == "cut" and loop_cut(block) is not None:
        content, is_cut = cut_content(block), True
    if block.type is BlockType.FIGURE:
        inside = _CENTER_RE.sub("", content).strip()
        parts = [_figure(page, block, image_dir), *_figure_payloads(block, tables), inside]
        text = "\n\n".join(p for p in parts if p)
    elif block.table is not None:
        text, table_cut = _table(block, content, tables, loops == "cut")
        is_cut = is_cut or table_cut
    elif block.type is BlockType.EQUATION and not is_cut:
        text = _equation(block, content, equation_numbers)
    elif block.type in (BlockType.TITLE, BlockType.SECTION_HEADING) and content:
        marks = "#" * (block.heading_level or 1)
        text = content if content.startswith("#") else f"{marks} {content}"
    else:
        text = _CENTER_RE.sub("", content).strip()
    if is_cut and loop_marker:
        text = f"{text}\n\n{LOOP_NOTE}"
    return text.strip()


def _safe_block(page: Page, block: Block, **options: object) -> str:
    """`block_to_markdown`, or the block's own text if rendering fails (a bug): one block
    never costs a page or a document its Markdown. The pipeline reports such a page failed."""
    try:
        return block_to_markdown(page, block, **options)  # type: ignore[arg-type]
    except Exception:
        log.exception("Markdown export failed on page %d, block %d", page.number, block.index)
        return _CENTER_RE.sub("", block.content).strip()


def page_to_markdown(
    page: Page,
    *,
    tables: Literal["html", "pipe"] = "html",
    image_dir: str | None = None,
    loops: Literal["cut", "keep"] = "cut",
    loop_marker: bool = True,
    equation_numbers: bool = True,
    failed_notes: bool = True,
    page_separator: str = PAGE_SPLIT,
) -> str:
    """The Markdown of one page (`page_separator` is used by `document_to_markdown` only).

    Args:
        page: the parsed page.
        tables: "html" keeps spans; "pipe" writes Markdown pipe tables.
        image_dir: where figure crops are (or will be) saved, for `![figure](..)` links.
        loops: "cut" leaves looped text out (one copy of what repeats stays), "keep"
            writes it all.
        loop_marker: write an HTML comment where a loop was cut. Text meant for embedding or
            scoring (connectors' node text) should pass False; the flags stay on the page.
        equation_numbers: write an equation's number as `\\tag{n}` (False drops it).
        failed_notes: open a failed page with `failed_note` (which page was not read, why,
            what to pass), so that no page is missing without a word. Text meant for
            embedding should pass False; the status and reason stay on the page.
        page_separator: accepted so one set of options serves pages and documents.
    """
    parts: list[str] = []
    if failed_notes and page.status is PageStatus.FAILED:
        parts.append(failed_note(page))
    previous: Block | None = None
    for block in page.blocks:
        if loops == "cut" and "repeated_block" in block.flags:
            if loop_marker and (not parts or not parts[-1].endswith(LOOP_NOTE)):
                parts.extend(["\n\n", LOOP_NOTE] if parts else [LOOP_NOTE])
            continue
        text = _safe_block(
            page, block, tables=tables, image_dir=image_dir, loops=loops,
            loop_marker=loop_marker, equation_numbers=equation_numbers,
        )
        if not text:
            continue
        if parts and parts[-1].endswith(LOOP_NOTE) and text.startswith(LOOP_NOTE):
            text = text[len(LOOP_NOTE) :].strip()
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
    loop_marker: bool = True,
    equation_numbers: bool = True,
    failed_notes: bool = True,
    page_separator: str = PAGE_SPLIT,
) -> str:
    """All pages' Markdown joined by `page_separator` (the released `<--- Page Split --->`);
    the other options as `page_to_markdown`.

    A table continued across pages (`Block.continued_by`) is written once, whole, where it
    starts; its continuation leaves a note (`dsocr_connectors.deep.table_merge.merged_view`).
    """
    from dsocr_connectors.deep.table_merge import merged_view

    doc = merged_view(doc)
    return page_separator.join(
        page_to_markdown(
            page, tables=tables, image_dir=image_dir, loops=loops,
            loop_marker=loop_marker, equation_numbers=equation_numbers,
            failed_notes=failed_notes,
        )
        for page in doc.pages
    )
