"""Exports of the document model: Markdown, HTML, tables, layout previews (JSON is
`Document.to_json`)."""

from dsocr_connectors.export.html import document_to_html, page_to_html
from dsocr_connectors.export.markdown import document_to_markdown, page_to_markdown
from dsocr_connectors.export.preview import draw_layout, save_figure_crops, save_previews
from dsocr_connectors.export.tables import (
    table_to_csv,
    table_to_dataframe,
    table_to_html,
    table_to_markdown,
)

__all__ = [
    "document_to_html",
    "document_to_markdown",
    "draw_layout",
    "page_to_html",
    "page_to_markdown",
    "save_figure_crops",
    "save_previews",
    "table_to_csv",
    "table_to_dataframe",
    "table_to_html",
    "table_to_markdown",
]
