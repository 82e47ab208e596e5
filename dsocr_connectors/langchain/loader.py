"""`DeepSeekOCRLoader`: files -> LangChain `Document`s, one per page (default) or per file.

Metadata names follow `PyMuPDFLoader` where they overlap: `source`, `file_path`, `page` (the
0-based page index, as PyMuPDFLoader has it) and `total_pages`; plus `page_label` (the PDF's
label, else the 1-based number as text), `status`, `flags` and `dsocr`, the structured Page
(or Document) JSON that `DeepSeekOCRTextSplitter` chunks by structure. Every input page
yields a Document, failed ones included (see `status`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document as LCDocument

from dsocr_connectors.connecting import (
    DocumentConverter,
    ExportType,
    IdFunc,
    MetadataFunc,
    convert_all,
    default_id,
    make_converter,
)
from dsocr_connectors.document import Document, Page
from dsocr_connectors.metadata import text_and_metadata


def zero_based(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata with `page` as PyMuPDFLoader's 0-based index (other page fields unchanged)."""
    if isinstance(metadata.get("page"), int):
        metadata["page"] -= 1
    return metadata


class DeepSeekOCRLoader(BaseLoader):
    """Load PDFs and images with DeepSeek-OCR as LangChain Documents.

    Example:
        loader = DeepSeekOCRLoader("report.pdf")  # no model configured: the PDF text layer
        for doc in loader.lazy_load():
            print(doc.metadata["page"], doc.metadata["page_label"])

    Args:
        file_path: a path or a list of paths.
        converter: anything with `convert(source, *, name=None) -> Document`; default a
            `dsocr_connectors.pipeline.Converter` built from `**converter_options`.
        export_type: MARKDOWN (text is Markdown, structure in `metadata["dsocr"]`) or JSON
            (text is the Page/Document JSON, no `dsocr` key).
        split_pages: one Document per page (True, PyMuPDFLoader's mode="page") or one per
            file (False, mode="single").
        id_func: `(source, page number or None) -> id`; default `source#page=N`.
        metadata_func: `(metadata, document, page or None) -> metadata`, applied last.
        **converter_options: `Converter` options (engine, model, mode, prompt, ocr, dpi,
            batch_size, device, max_new_tokens, pages, password).
    """

    def __init__(
        self,
        file_path: str | Path | Iterable[str | Path],
        *,
        converter: DocumentConverter | None = None,
        export_type: ExportType | str = ExportType.MARKDOWN,
        split_pages: bool = True,
        id_func: IdFunc | None = None,
        metadata_func: MetadataFunc | None = None,
        **converter_options: Any,
    ) -> None:
        self.file_path = file_path if isinstance(file_path, (str, Path)) else list(file_path)
        self._converter = make_converter(converter, converter_options)
        self.export_type = ExportType(export_type)
        self.split_pages = split_pages
        self.id_func = id_func or default_id
        self.metadata_func = metadata_func

    def lazy_load(self) -> Iterator[LCDocument]:
        """Yield Documents file by file, page by page (`load`/`alazy_load` build on it)."""
        for doc in convert_all(self._converter(), self.file_path):
            if self.split_pages:
                for page in doc.pages:
                    yield self._document(doc, page)
            else:
                yield self._document(doc, None)

    def _document(self, doc: Document, page: Page | None) -> LCDocument:
        text, metadata = text_and_metadata(doc, page, self.export_type)
        metadata = zero_based(metadata)
        if self.metadata_func is not None:
            metadata = self.metadata_func(metadata, doc, page)
        doc_id = self.id_func(doc.source, page.number if page is not None else None)
        return LCDocument(id=doc_id, page_content=text, metadata=metadata)
