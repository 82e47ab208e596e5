"""`DeepSeekOCRReader`: files -> LlamaIndex `Document`s, one per page (default) or per file.

The reader only converts and packages: a converter (by default
`dsocr_connectors.pipeline.Converter`, built on first use from the keyword options) turns
each file into a `dsocr_connectors.Document`; the reader makes one LlamaIndex Document per
page (or one per file) whose text is the Markdown (or the JSON) and whose metadata carries
`source`, `file_path`, `file_name`, `page` (1-based), `page_label`, `total_pages`, `status`,
`flags`, and `dsocr`, the structured Page (or Document) JSON that `DeepSeekOCRNodeParser`
chunks by structure. Every input page yields a Document, failed ones included (see `status`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document as LIDocument

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
from dsocr_connectors.metadata import NOT_EMBEDDED, text_and_metadata


class DeepSeekOCRReader(BaseReader):
    """Read PDFs and images with DeepSeek-OCR into LlamaIndex Documents.

    Example:
        reader = DeepSeekOCRReader()  # no model configured: the PDF text layer
        docs = reader.load_data("report.pdf")
        docs[0].metadata["page"], docs[0].metadata["page_label"]  # (1, "1")

    Args:
        converter: anything with `convert(source, *, name=None) -> Document`; default a
            `dsocr_connectors.pipeline.Converter` built from `**converter_options`.
        export_type: MARKDOWN (text is Markdown, structure in `metadata["dsocr"]`) or JSON
            (text is the Page/Document JSON, no `dsocr` key).
        split_pages: one Document per page (True) or one per file (False).
        id_func: `(source, page or None) -> doc id`; default `source#page=N` (stable, so
            re-ingesting a file upserts instead of duplicating).
        metadata_func: `(metadata, document, page or None) -> metadata`, applied last.
        **converter_options: `Converter` options (engine, model, mode, prompt, ocr, dpi,
            batch_size, device, max_new_tokens, pages, password).
    """

    def __init__(
        self,
        *,
        converter: DocumentConverter | None = None,
        export_type: ExportType | str = ExportType.MARKDOWN,
        split_pages: bool = True,
        id_func: IdFunc | None = None,
        metadata_func: MetadataFunc | None = None,
        **converter_options: Any,
    ) -> None:
        self._converter = make_converter(converter, converter_options)
        self.export_type = ExportType(export_type)
        self.split_pages = split_pages
        self.id_func = id_func or default_id
        self.metadata_func = metadata_func

    def lazy_load_data(  # type: ignore[override]
        self,
        file_path: str | Path | Iterable[str | Path],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterable[LIDocument]:
        """Yield Documents file by file, page by page.

        Args:
            file_path: a path or a list of paths.
            extra_info: metadata added to every Document (and so to every node).
            fs: an fsspec filesystem to read the files through (as SimpleDirectoryReader
                passes it); None reads local files.

        Yields:
            One Document per page (or per file with `split_pages=False`).
        """
        if extra_info is not None and not isinstance(extra_info, dict):
            raise TypeError(f"extra_info must be a dict, not {type(extra_info).__name__}")
        for doc in convert_all(self._converter(), file_path, fs=fs):
            if self.split_pages:
                for page in doc.pages:
                    yield self._document(doc, page, extra_info)
            else:
                yield self._document(doc, None, extra_info)

    def _document(self, doc: Document, page: Page | None,
                  extra_info: dict[str, Any] | None) -> LIDocument:
        text, metadata = text_and_metadata(doc, page, self.export_type)
        metadata.update(extra_info or {})
        if self.metadata_func is not None:
            metadata = self.metadata_func(metadata, doc, page)
        excluded = [k for k in NOT_EMBEDDED if k in metadata]
        return LIDocument(
            id_=self.id_func(doc.source, page.number if page is not None else None),
            text=text,
            metadata=metadata,
            excluded_embed_metadata_keys=excluded,
            excluded_llm_metadata_keys=excluded,
        )
