"""dsocr-connectors: DeepSeek-OCR behind the document loaders of LlamaIndex and LangChain."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Everything loads on first use: the document model (pydantic) so that `dsocr --help` and
# other light imports of the package stay light, the connectors so that llama-index,
# langchain and unstructured stay optional dependencies (they stay out of __all__, so
# `import *` does not need them).
_LAZY = {
    "Block": "dsocr_connectors.document",
    "BlockType": "dsocr_connectors.document",
    "Box": "dsocr_connectors.document",
    "Document": "dsocr_connectors.document",
    "Page": "dsocr_connectors.document",
    "PageStatus": "dsocr_connectors.document",
    "Table": "dsocr_connectors.document",
    "TableCell": "dsocr_connectors.document",
    "DeepSeekOCRReader": "dsocr_connectors.llama_index",
    "DeepSeekOCRNodeParser": "dsocr_connectors.llama_index",
    "DeepSeekOCRLoader": "dsocr_connectors.langchain",
    "DeepSeekOCRParser": "dsocr_connectors.langchain",
    "DeepSeekOCRTextSplitter": "dsocr_connectors.langchain",
    "partition_dsocr": "dsocr_connectors.unstructured",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dsocr_connectors' has no attribute {name!r}")

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
