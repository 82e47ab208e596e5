"""Model labels -> the documented `BlockType` taxonomy, and heading levels.

`LABEL_TYPES` is the whole mapping; a label not in it becomes `BlockType.UNKNOWN` and the
block keeps the label verbatim (`table C1` is not guessed into a table). Besides the labels
DeepSeek-OCR emits (title, sub_title, text, table, table_caption, table_footnote, image,
image_caption, image_footnote, equation), common layout names from other models are mapped
too, so a fine-tuned checkpoint that emits them is understood.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import BlockType

LABEL_TYPES: dict[str, BlockType] = {
    # emitted by DeepSeek-OCR
    "title": BlockType.TITLE,
    "sub_title": BlockType.SECTION_HEADING,
    "text": BlockType.TEXT,
    "table": BlockType.TABLE,
    "table_caption": BlockType.TABLE_CAPTION,
    "table_footnote": BlockType.TABLE_FOOTNOTE,
    "image": BlockType.FIGURE,
    "image_caption": BlockType.FIGURE_CAPTION,
    "image_footnote": BlockType.FIGURE_FOOTNOTE,
    "equation": BlockType.EQUATION,
    # common layout names (DocLayNet, PubLayNet, docling) a fine-tuned model may use
    "doc_title": BlockType.TITLE,
    "section_header": BlockType.SECTION_HEADING,
    "section_heading": BlockType.SECTION_HEADING,
    "heading": BlockType.SECTION_HEADING,
    "paragraph": BlockType.TEXT,
    "plain_text": BlockType.TEXT,
    "list": BlockType.LIST_ITEM,
    "list_item": BlockType.LIST_ITEM,
    "figure": BlockType.FIGURE,
    "picture": BlockType.FIGURE,
    "chart": BlockType.FIGURE,
    "figure_caption": BlockType.FIGURE_CAPTION,
    "figure_footnote": BlockType.FIGURE_FOOTNOTE,
    "formula": BlockType.EQUATION,
    "interline_equation": BlockType.EQUATION,
    "header": BlockType.HEADER,
    "page_header": BlockType.HEADER,
    "footer": BlockType.FOOTER,
    "page_footer": BlockType.FOOTER,
    "page_number": BlockType.PAGE_NUMBER,
}

_HEADING_RE = re.compile(r"^(#{1,6})(?=\s|$)")
DEFAULT_LEVELS = {BlockType.TITLE: 1, BlockType.SECTION_HEADING: 2}


def block_type(label: str) -> BlockType:
    """The block type of a model label; unknown labels give `BlockType.UNKNOWN`."""
    return LABEL_TYPES.get(label.strip(), BlockType.UNKNOWN)


def is_known_label(label: str) -> bool:
    return label.strip() in LABEL_TYPES


def markdown_heading_level(content: str) -> int | None:
    """The level of a Markdown ATX heading (`## x` -> 2) at the start of `content`."""
    match = _HEADING_RE.match(content.lstrip())
    return len(match.group(1)) if match else None


def heading_level(kind: BlockType, content: str) -> int | None:
    """Heading level of a title/section block: the `#` count, else 1 (title) or 2 (section).

    Other block types have no level (None), whatever their content starts with.
    """
    if kind not in DEFAULT_LEVELS:
        return None
    return markdown_heading_level(content) or DEFAULT_LEVELS[kind]
