"""`DeepSeekOCRTextSplitter`: a LangChain `TextSplitter` that cuts by the document structure.

On Documents from `DeepSeekOCRLoader` (they carry `metadata["dsocr"]`, or are the JSON
export) it chunks the structured page or file with `splitters.chunk_document`: tables whole
or by rows with the header repeated (continued tables merged), equations atomic, heading
path kept, boxes and page span per chunk. On any other text it applies the same rules to
the text read as Markdown. Chunk metadata: the loaded document's keys (without its `dsocr`
payload) plus the keys of `dsocr_connectors.metadata.chunk_metadata`, with `page` as the
0-based index of the chunk's first page (PyMuPDFLoader's convention; `page_span` and boxes
keep 1-based page numbers), and `start_index` with `add_start_index=True`. Each figure crop
the loader carried becomes one more Document (its caption as text, `image_base64` or
`image_path` in metadata). Chunk ids are UUIDs derived from the loaded document's id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_text_splitters import TextSplitter

from dsocr_connectors.document import BlockType, Document
from dsocr_connectors.langchain.parser import zero_based
from dsocr_connectors.metadata import (
    chunk_metadata,
    figure_items,
    flatten,
    plain_chunk_metadata,
    stable_id,
)
from dsocr_connectors.payload import PAYLOAD_KEY, payload_document, payload_figures
from splitters import FURNITURE, Chunk, ChunkBy, chunk_document, resolve_length
from splitters.plain import chunk_text


def start_index(text: str, chunk: str, position: int) -> int:
    """Where `chunk` starts in `text` (at or after `position`): the whole chunk when it is
    there verbatim, else its first line found (a heading's words, a paragraph, a table's
    first body row by its first cell; a repeated table header is skipped), else -1."""
    found = text.find(chunk, position)
    if found >= 0:
        return found
    lines = chunk.splitlines()
    rules = {i for i, line in enumerate(lines) if line.startswith("|---")}
    wanted = [line for i, line in enumerate(lines)
              if line.strip() and i not in rules and i + 1 not in rules]
    for line in wanted[:4]:
        if line.startswith("|"):
            probes = [cell.strip() for cell in line.strip("|").split("|") if cell.strip()][:1]
        else:
            probes = [line.lstrip("#").strip()]
        for probe in probes:
            found = text.find(probe, position)
            if found >= 0:
                return found
    return -1


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
        min_chunk_size: shorter chunks join a neighbour; None: `min(50, chunk_size // 10)`.
        language: the language paragraphs are split into sentences by.
        skip_types: block types left out (default: page headers, footers, page numbers).
        flat_metadata: values str/int/float/bool only (lists and dicts as JSON text).
        include_figures: one Document per figure crop the loader carried.
        chunker: `(Document) -> list[Chunk]` replacing `chunk_document` with the options above.
        **kwargs: other `TextSplitter` options (`add_start_index`, ...).
    """

    def __init__(
        self,
        *,
        chunk_size: int = 1000,
        chunk_overlap: int = 0,
        length_function: Any = None,
        chunk_by: ChunkBy | str = ChunkBy.SECTION,
        min_chunk_size: int | None = None,
        language: str = "en",
        skip_types: Iterable[BlockType] = FURNITURE,
        flat_metadata: bool = True,
        include_figures: bool = True,
        chunker: Callable[[Document], list[Chunk]] | None = None,
        **kwargs: Any,
    ) -> None:
        self._length = resolve_length(length_function)
        super().__init__(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                         length_function=self._length, **kwargs)
        self._options = {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
                         "length": self._length, "by": ChunkBy(chunk_by),
                         "skip_types": list(skip_types), "min_chunk_size": min_chunk_size,
                         "language": language}
        self._chunker = chunker
        self._flat = flat_metadata
        self._figures = include_figures

    def split_text(self, text: str) -> list[str]:
        """Split a plain (Markdown) text with the structural rules; no metadata."""
        return [c.text for c in chunk_text(text, **self._options)]

    def split_documents(self, documents: Iterable[LCDocument]) -> list[LCDocument]:
        """Split each document; chunks never cross documents.

        Args:
            documents: LangChain documents, from `DeepSeekOCRLoader` or anywhere else.

        Returns:
            One Document per chunk, in order, then one per figure crop of each document.
        """
        out: list[LCDocument] = []
        for document in documents:
            out.extend(self._split(document))
        return out

    def _split(self, document: LCDocument) -> list[LCDocument]:
        base = {k: v for k, v in document.metadata.items() if k != PAYLOAD_KEY}
        key = document.id or f"{base.get('source', '')}#page={base.get('page', '')}"
        doc = payload_document(document.metadata, document.page_content)
        if doc is None:
            source = str(base.get("source", ""))
            chunks = chunk_text(document.page_content, source=source, **self._options)
            pieces = [(c, plain_chunk_metadata(c)) for c in chunks]
        else:
            chunks = self._chunker(doc) if self._chunker else chunk_document(doc, **self._options)
            pieces = [(c, zero_based(chunk_metadata(c, doc))) for c in chunks]
        out = []
        position = 0
        for i, (chunk, metadata) in enumerate(pieces):
            metadata = {**base, **metadata}
            if self._add_start_index:
                metadata["start_index"] = start_index(document.page_content, chunk.text,
                                                      position)
                position = max(position, metadata["start_index"])
            out.append(LCDocument(id=stable_id(f"{key}#chunk={i}"), page_content=chunk.text,
                                  metadata=flatten(metadata) if self._flat else metadata))
        if doc is not None and self._figures:
            for item in figure_items(doc, payload_figures(document.metadata), chunks):
                if item.image_base64 is None and item.image_path is None:
                    continue
                metadata = {**base, **zero_based(item.metadata)}
                if item.image_base64 is not None:
                    metadata["image_base64"] = item.image_base64
                if item.image_path is not None:
                    metadata["image_path"] = item.image_path
                out.append(LCDocument(id=stable_id(f"{key}#figure={item.page}.{item.block}"),
                                      page_content=item.text,
                                      metadata=flatten(metadata) if self._flat else metadata))
        return out

    def transform_documents(self, documents: Any, **kwargs: Any) -> list[LCDocument]:
        """Same as `split_documents` (the document-transformer interface)."""
        return self.split_documents(list(documents))
