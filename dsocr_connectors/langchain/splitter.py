"""`DeepSeekOCRTextSplitter`: a LangChain `TextSplitter` that cuts by the document structure.

On Documents from `DeepSeekOCRLoader` (they carry `metadata["dsocr"]`, or are the JSON
export) it chunks the structured page or file with `splitters.chunk_document`: tables whole
or by rows with the header repeated, equations atomic, heading path kept, boxes and page
span per chunk. On any other text it applies the same rules to the text read as Markdown.
Chunk metadata: the loaded document's keys (without its `dsocr` payload) plus the keys of
`dsocr_connectors.metadata.chunk_metadata`, with `page` as the 0-based index of the chunk's
first page (PyMuPDFLoader's convention; `page_span` and boxes keep 1-based page numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_text_splitters import TextSplitter

from dsocr_connectors.document import BlockType, Document
from dsocr_connectors.langchain.loader import zero_based
from dsocr_connectors.metadata import (
    PAYLOAD_KEY,
    chunk_metadata,
    payload_document,
    plain_chunk_metadata,
)
from splitters import FURNITURE, Chunk, ChunkBy, chunk_document, resolve_length
from splitters.plain import chunk_text


class DeepSeekOCRTextSplitter(TextSplitter):
    """Split DeepSeek-OCR documents along their structure (and plain text along Markdown).

    Example:
        splitter = DeepSeekOCRTextSplitter(chunk_size=800, chunk_by="section")
        chunks = splitter.split_documents(DeepSeekOCRLoader("report.pdf").lazy_load())

    Args:
        chunk_size: the largest chunk, measured with `length_function`.
        chunk_overlap: trailing whole units repeated at the start of the next chunk.
        length_function: None (characters), a tokenizer, a path to a tokenizer.json, or a
            callable `text -> int`.
        chunk_by: "section" (default), "block" or "size".
        skip_types: block types left out (default: page headers, footers, page numbers).
        chunker: `(Document) -> list[Chunk]` replacing `chunk_document` with the options above.
        **kwargs: other `TextSplitter` options (add_start_index, ...).
    """

    def __init__(
        self,
        *,
        chunk_size: int = 1000,
        chunk_overlap: int = 0,
        length_function: Any = None,
        chunk_by: ChunkBy | str = ChunkBy.SECTION,
        skip_types: Iterable[BlockType] = FURNITURE,
        chunker: Callable[[Document], list[Chunk]] | None = None,
        **kwargs: Any,
    ) -> None:
        self._length = resolve_length(length_function)
        super().__init__(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                         length_function=self._length, **kwargs)
        self._options = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                         "length": self._length, "by": ChunkBy(chunk_by),
                         "skip_types": list(skip_types)}
        self._chunker = chunker

    def split_text(self, text: str) -> list[str]:
        """Split a plain (Markdown) text with the structural rules; no metadata."""
        return [c.text for c in chunk_text(text, **self._options)]

    def split_documents(self, documents: Iterable[LCDocument]) -> list[LCDocument]:
        """Split each document; chunks never cross documents.

        Args:
            documents: LangChain documents, from `DeepSeekOCRLoader` or anywhere else.

        Returns:
            One Document per chunk, in order.
        """
        out: list[LCDocument] = []
        for document in documents:
            base = {k: v for k, v in document.metadata.items() if k != PAYLOAD_KEY}
            doc = payload_document(document.metadata, document.page_content)
            if doc is None:
                source = str(base.get("source", ""))
                for chunk in chunk_text(document.page_content, source=source, **self._options):
                    metadata = {**base, **plain_chunk_metadata(chunk)}
                    out.append(LCDocument(page_content=chunk.text, metadata=metadata))
                continue
            chunks = self._chunker(doc) if self._chunker else chunk_document(doc, **self._options)
            for chunk in chunks:
                metadata = {**base, **zero_based(chunk_metadata(chunk, doc))}
                out.append(LCDocument(page_content=chunk.text, metadata=metadata))
        return out

    def transform_documents(self, documents: Any, **kwargs: Any) -> list[LCDocument]:
        """Same as `split_documents` (the document-transformer interface)."""
        return self.split_documents(list(documents))
