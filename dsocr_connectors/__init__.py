"""dsocr-connectors: DeepSeek-OCR behind the document loaders of LlamaIndex and LangChain."""

from dsocr_connectors.document import (
    Block,
    BlockType,
    Box,
    Document,
    Page,
    PageStatus,
    Table,
    TableCell,
)

__version__ = "0.1.0"

__all__ = [
    "Block",
    "BlockType",
    "Box",
    "Document",
    "Page",
    "PageStatus",
    "Table",
    "TableCell",
    "__version__",
]
