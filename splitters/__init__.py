"""Structure-aware chunking of `Document`s, shared by the LlamaIndex and LangChain connectors.

Framework-free: `chunk_document(doc, ...)` turns one document into `Chunk`s that never cut a
table row or an equation, keep tables whole when they fit (else row groups with the header
repeated), carry their heading path, page span and boxes, and are sized in characters or in
tokens of any tokenizer.
"""

from splitters.chunk import Chunk, union_box
from splitters.chunker import ChunkBy, chunk_document
from splitters.sizing import LengthFunction, characters, resolve_length, token_counter
from splitters.structure import FURNITURE

__all__ = [
    "FURNITURE",
    "Chunk",
    "ChunkBy",
    "LengthFunction",
    "characters",
    "chunk_document",
    "resolve_length",
    "token_counter",
    "union_box",
]
