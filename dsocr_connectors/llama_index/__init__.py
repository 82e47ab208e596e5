"""LlamaIndex connector: `DeepSeekOCRReader`, `DeepSeekOCRNodeParser`, `HashingEmbedding`."""

from dsocr_connectors.connecting import ExportType
from dsocr_connectors.llama_index.hashing_embedding import HashingEmbedding
from dsocr_connectors.llama_index.node_parser import DeepSeekOCRNodeParser
from dsocr_connectors.llama_index.reader import DeepSeekOCRReader
from splitters import ChunkBy

__all__ = [
    "ChunkBy",
    "DeepSeekOCRNodeParser",
    "DeepSeekOCRReader",
    "ExportType",
    "HashingEmbedding",
]
