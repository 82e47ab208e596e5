"""Parsing DeepSeek-OCR output into the document model.

`parse_page(raw, number=..., image_size=..., prompt=...) -> Page` is the entry point; the
pieces it is made of are exported for callers that need one of them alone (re-parsing a
table, checking the no-loss property, splitting a multi-page file).
"""

from dsocr_connectors.parsing.boxes import parse_boxes
from dsocr_connectors.parsing.check import content_characters, missing_characters, page_text
from dsocr_connectors.parsing.grounding import (
    EOS_TEXT,
    PAGE_SPLIT,
    Kind,
    Token,
    content_text,
    split_pages,
    tokenize,
)
from dsocr_connectors.parsing.labels import LABEL_TYPES, block_type, heading_level
from dsocr_connectors.parsing.page import detect_mode, parse_page
from dsocr_connectors.parsing.repetition import (
    Loop,
    exact_loop_start,
    loop_start,
    near_loop_start,
    text_loop,
)
from dsocr_connectors.parsing.tables import parse_table

__all__ = [
    "EOS_TEXT",
    "LABEL_TYPES",
    "PAGE_SPLIT",
    "Kind",
    "Loop",
    "Token",
    "block_type",
    "content_characters",
    "content_text",
    "detect_mode",
    "exact_loop_start",
    "heading_level",
    "loop_start",
    "missing_characters",
    "near_loop_start",
    "page_text",
    "parse_boxes",
    "parse_page",
    "parse_table",
    "split_pages",
    "text_loop",
    "tokenize",
]
