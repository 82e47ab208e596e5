"""Documents -> one standalone HTML file: each page's layout boxes, then its content.

For a page whose image size is known, a layout panel of that aspect ratio shows every block
box as an outlined rectangle placed with percentages (so no image is needed), labelled with
the block's index and label and coloured by type. Below it the content follows in reading
order: headings, paragraphs (LaTeX left as written), tables (clean HTML with spans),
figures (`<img>` when a crop path is known). Everything from the model is escaped.
"""

from __future__ import annotations

import html

from dsocr_connectors.document import Block, BlockType, Document, Page
from dsocr_connectors.export.colors import type_color
from dsocr_connectors.export.markdown import LOOP_NOTE, cut_table_loop, loop_offset

_STYLE = """
body { font-family: sans-serif; margin: 2em; }
.page { margin-bottom: 3em; border-top: 2px solid #444; }
.layout { position: relative; width: 600px; border: 1px solid #999; background: #fafafa; }
.box { position: absolute; border: 2px solid; box-sizing: border-box; }
.box span { font-size: 10px; background: #fff; opacity: 0.85; }
.flags { color: #a00; font-size: 0.9em; }
table { border-collapse: collapse; } td, th { border: 1px solid #999; padding: 2px 4px; }
"""


def _layout(page: Page) -> str:
    if not page.image_width or not page.image_height:
        return ""
    ratio = 100.0 * page.image_height / page.image_width
    boxes = []
    for block in page.blocks:
        for box in block.boxes:
            x1, y1, x2, y2 = (100.0 * v for v in box.normalized())
            style = (
                f"left:{x1:.2f}%;top:{y1:.2f}%;width:{x2 - x1:.2f}%;height:{y2 - y1:.2f}%;"
                f"border-color:{type_color(block.type)}"
            )
            title = html.escape(f"{block.index} {block.label or block.type.value}")
            boxes.append(f'<div class="box" style="{style}"><span>{title}</span></div>')
    return (
        f'<div class="layout" style="height:0;padding-bottom:{ratio:.3f}%">'
        + "".join(boxes)
        + "</div>"
    )


def _block_html(block: Block) -> str:
    content = block.content
    offset = loop_offset(block)
    note = ""
    if offset is not None:
        content, note = content[:offset], f"<p><em>{html.escape(LOOP_NOTE)}</em></p>"
    if block.table is not None and block.table.num_cols:
        if "repetition" in block.table.flags:
            note = f"<p><em>{html.escape(LOOP_NOTE)}</em></p>"
        return cut_table_loop(block.table).to_html() + note
    if block.type is BlockType.FIGURE:
        path = block.figure.crop_path if block.figure else None
        return f'<img src="{html.escape(path)}" alt="figure">' if path else ""
    text = html.escape(content.replace("<center>", "").replace("</center>", "").strip())
    if not text:
        return ""
    text = text.replace("\n", "<br>")
    if block.type in (BlockType.TITLE, BlockType.SECTION_HEADING):
        level = min(max(block.heading_level or 1, 1), 6)
        return f"<h{level}>{text.lstrip('#').strip()}</h{level}>"
    return f'<p data-type="{block.type.value}">{text}</p>' + note


def page_to_html(page: Page) -> str:
    """One `<section>` for a page: title line, flags, layout panel, content."""
    parts = [f'<section class="page" id="page-{page.number}"><h2>Page {page.number}</h2>']
    if page.flags:
        parts.append(f'<p class="flags">flags: {html.escape(", ".join(page.flags))}</p>')
    parts.append(_layout(page))
    for block in page.blocks:
        if "repeated_block" not in block.flags:
            parts.append(_block_html(block))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def document_to_html(doc: Document) -> str:
    """A standalone HTML page for the whole document."""
    title = html.escape(doc.source)
    pages = "\n".join(page_to_html(page) for page in doc.pages)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head>\n<body><h1>{title}</h1>\n{pages}\n</body></html>\n"
    )
