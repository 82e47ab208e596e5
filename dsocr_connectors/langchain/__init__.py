"""LangChain connector: `DeepSeekOCRLoader`, `DeepSeekOCRParser`, `DeepSeekOCRTextSplitter`,
`HashingEmbeddings`."""

from dsocr_connectors.connecting import ExportType
from dsocr_connectors.langchain.hashing_embedding import HashingEmbeddings
from dsocr_connectors.langchain.loader import DeepSeekOCRLoader
from dsocr_connectors.langchain.parser import DeepSeekOCRParser
from dsocr_connectors.langchain.splitter import DeepSeekOCRTextSplitter
from splitters import ChunkBy

__all__ = [
    "ChunkBy",
    "DeepSeekOCRLoader",
    "DeepSeekOCRParser",
    "DeepSeekOCRTextSplitter",
    "ExportType",
    "HashingEmbeddings",
]
