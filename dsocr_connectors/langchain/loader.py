"""`DeepSeekOCRLoader`: files and URLs -> LangChain `Document`s, one per page (or per file).

Built on `DeepSeekOCRParser` (a `BaseBlobParser`): each path becomes a blob (a local path is
read lazily by the loaders; an fsspec URL such as `s3://`, `gs://`, `https://` is read
whole once) and the parser converts it. Metadata as the parser's (PyMuPDFLoader's names,
`page` 0-based). `alazy_load` runs the conversion in one worker thread and never blocks
the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.document_loaders.blob_loaders import Blob
from langchain_core.documents import Document as LCDocument

from dsocr_connectors.async_bridge import iterate_in_thread
from dsocr_connectors.connecting import as_paths, open_input
from dsocr_connectors.langchain.parser import DeepSeekOCRParser, zero_based

__all__ = ["DeepSeekOCRLoader", "zero_based"]


class DeepSeekOCRLoader(BaseLoader):
    """Load PDFs and images with DeepSeek-OCR as LangChain Documents.

    Example:
        loader = DeepSeekOCRLoader("report.pdf")  # no model configured: the PDF text layer
        for doc in loader.lazy_load():
            print(doc.metadata["page"], doc.metadata["page_label"])

    Args:
        file_path: a path or URL, or a list of them.
        fs: an fsspec filesystem to read the paths through (None: local paths and URLs).
        parser: a ready `DeepSeekOCRParser`; otherwise one is made from `**options`.
        **options: `DeepSeekOCRParser` options (converter, export_type, split_pages,
            flat_metadata, figures, figure_dir, id_func, metadata_func) and `Converter`
            options (engine, model, mode, ocr, dpi, pages, password, ...).
    """

    def __init__(
        self,
        file_path: str | Path | Iterable[str | Path],
        *,
        fs: Any = None,
        parser: DeepSeekOCRParser | None = None,
        **options: Any,
    ) -> None:
        if parser is not None and options:
            raise TypeError("pass either parser= or parser options, not both")
        self.file_path = file_path if isinstance(file_path, (str, Path)) else list(file_path)
        self.fs = fs
        self.parser = parser or DeepSeekOCRParser(**options)

    def blobs(self) -> Iterator[Blob]:
        """One blob per path: a path blob for a local file, a bytes blob for a URL."""
        for path in as_paths(self.file_path):
            item = open_input(path, self.fs)
            if isinstance(item.source, bytes):
                yield Blob.from_data(item.source, path=item.name)
            else:
                yield Blob.from_path(item.source)

    def lazy_load(self) -> Iterator[LCDocument]:
        """Yield Documents file by file, page by page (`load` builds on it)."""
        for blob in self.blobs():
            yield from self.parser.lazy_parse(blob)

    async def alazy_load(self) -> AsyncIterator[LCDocument]:
        """`lazy_load` in a worker thread: the event loop never blocks on the conversion."""
        async for doc in iterate_in_thread(self.lazy_load, name="dsocr-loader"):
            yield doc
