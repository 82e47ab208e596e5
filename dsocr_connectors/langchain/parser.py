"""`DeepSeekOCRParser`: a LangChain `BaseBlobParser`, so DeepSeek-OCR works with `GenericLoader`.

    from langchain_community.document_loaders.generic import GenericLoader
    loader = GenericLoader.from_filesystem("reports/", glob="**/*.pdf",
                                           parser=DeepSeekOCRParser())

A blob (a file path, or bytes with a source name) is converted into a `dsocr_connectors`
Document, prepared (continued tables linked, PDF information, figure crops), and yielded
as one LangChain Document per page (or per file). Metadata names follow `PyMuPDFLoader`
where they overlap: `source`, `file_path`, `page` (the 0-based page index), `total_pages`,
`producer`, `creator`, `creationdate`, `moddate`, `title`, `author`, `subject`, `keywords`,
`format`; plus `page_label` (the PDF's label, else the 1-based number as text), `status`,
`flags` and `dsocr`, the structure `DeepSeekOCRTextSplitter` chunks by. Metadata is flat by
default (lists and dicts as JSON text). Every input page yields a Document, failed ones
included (see `status`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.document_loaders import BaseBlobParser
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document as LCDocument

from dsocr_connectors.connecting import (
    DocumentConverter,
    ExportType,
    IdFunc,
    MetadataFunc,
    Prepare,
    default_id,
    make_converter,
)
from dsocr_connectors.document import Page
from dsocr_connectors.metadata import flatten, text_and_metadata
from dsocr_connectors.payload import Prepared


def zero_based(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata with `page` as PyMuPDFLoader's 0-based index (other page fields unchanged)."""
    if isinstance(metadata.get("page"), int):
        metadata["page"] -= 1
    return metadata


class DeepSeekOCRParser(BaseBlobParser):
    """Parse PDF and image blobs with DeepSeek-OCR into LangChain Documents.

    Args:
        converter: anything with `convert(source, *, name=None) -> Document`; default a
            `dsocr_connectors.pipeline.Converter` built from `**converter_options`.
        export_type: MARKDOWN (text is Markdown, structure in `metadata["dsocr"]`) or JSON
            (text is the Page/Document JSON).
        split_pages: one Document per page (True, PyMuPDFLoader's mode="page") or one per
            file (False, mode="single").
        flat_metadata: values str/int/float/bool only (lists and dicts as JSON text).
        figures: figure crops carried for figure documents: "base64" (default), "path"
            (PNG files under `figure_dir`) or None.
        figure_dir: where crops are written with `figures="path"`.
        id_func: `(source, page number or None) -> id`; default a UUID of `source#page=N`.
        metadata_func: `(metadata, document, page or None) -> metadata`, applied last.
        **converter_options: `Converter` options (engine, model, mode, prompt, ocr, dpi,
            max_in_flight, device, max_new_tokens, pages, password).
    """

    def __init__(
        self,
        *,
        converter: DocumentConverter | None = None,
        export_type: ExportType | str = ExportType.MARKDOWN,
        split_pages: bool = True,
        flat_metadata: bool = True,
        figures: str | None = "base64",
        figure_dir: str | None = None,
        id_func: IdFunc | None = None,
        metadata_func: MetadataFunc | None = None,
        **converter_options: Any,
    ) -> None:
        self.converter = make_converter(converter, converter_options)
        self.export_type = ExportType(export_type)
        self.split_pages = split_pages
        self.flat_metadata = flat_metadata
        self.prepare = Prepare(figures, figure_dir, converter_options.get("password"))
        self.id_func = id_func or default_id
        self.metadata_func = metadata_func

    def lazy_parse(self, blob: Blob) -> Iterator[LCDocument]:
        """Convert one blob (its path when it has one, else its bytes) and yield its pages."""
        name = str(blob.source or blob.path or "<blob>")
        if blob.data is None and blob.path is not None:
            source: Any = blob.path
            doc = self.converter().convert(source, name=name)
        else:
            source = blob.as_bytes()
            doc = self.converter().convert(source, name=name)
        yield from self.documents(self.prepare(doc, source))

    def documents(self, prepared: Prepared) -> Iterator[LCDocument]:
        """The LangChain Documents of a prepared document (per page or per file)."""
        pages: list[Page | None] = list(prepared.document.pages) if self.split_pages else [None]
        for page in pages:
            yield self._document(prepared, page)

    def _document(self, prepared: Prepared, page: Page | None) -> LCDocument:
        doc = prepared.document
        text, metadata = text_and_metadata(prepared, page, self.export_type)
        metadata = zero_based(metadata)
        if self.metadata_func is not None:
            metadata = self.metadata_func(metadata, doc, page)
        if self.flat_metadata:
            metadata = flatten(metadata)
        doc_id = self.id_func(doc.source, page.number if page is not None else None)
        return LCDocument(id=doc_id, page_content=text, metadata=metadata)
