"""`DeepSeekOCRReader`: files -> LlamaIndex `Document`s, one per page (default) or per file.

The reader only converts and packages: a converter (by default
`dsocr_connectors.pipeline.Converter`, built on first use from the keyword options) turns
each file into a `dsocr_connectors.Document`, which is prepared (continued tables linked,
PDF information, figure crops: `dsocr_connectors.connecting.Prepare`); the reader makes one
LlamaIndex Document per page (or per file) whose text is the Markdown (or the JSON) and whose
metadata carries `source`, `file_path`, `file_name`, `page` (1-based), `page_label`,
`total_pages`, `status`, `flags`, a PDF's `producer`/`creator`/`creationdate`/..., and
`dsocr`, the structure `DeepSeekOCRNodeParser` chunks by (see `dsocr_connectors.payload`).
Metadata is flat by default (`dsocr_connectors.metadata.flatten`). Every input page yields a
Document, failed ones included (see `status`).

It is a `BasePydanticReader`: its settings serialise (`to_dict`/`from_dict`, `ReaderConfig`)
when the converter options do (names, not objects). `aload_data`/`alazy_load_data` run the
conversion in one worker thread and never block the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document as LIDocument

from dsocr_connectors.async_bridge import iterate_in_thread
from dsocr_connectors.connecting import (
    ExportType,
    IdFunc,
    MetadataFunc,
    Prepare,
    convert_all,
    default_id,
    make_converter,
)
from dsocr_connectors.document import Page
from dsocr_connectors.metadata import NOT_EMBEDDED, flatten, text_and_metadata
from dsocr_connectors.payload import Prepared


class DeepSeekOCRReader(BasePydanticReader):
    """Read PDFs and images with DeepSeek-OCR into LlamaIndex Documents.

    Example:
        reader = DeepSeekOCRReader()  # no model configured: the PDF text layer
        docs = reader.load_data("report.pdf")  # or "s3://bucket/report.pdf"
        docs[0].metadata["page"], docs[0].metadata["page_label"]  # (1, "1")

    Args:
        converter: anything with `convert(source, *, name=None) -> Document`; default a
            `dsocr_connectors.pipeline.Converter` built from `converter_options`.
        export_type: MARKDOWN (text is Markdown, structure in `metadata["dsocr"]`) or JSON
            (text is the Page/Document JSON).
        split_pages: one Document per page (True) or one per file (False).
        flat_metadata: metadata values str/int/float/bool only (lists and dicts as JSON
            text); False keeps lists and dicts.
        figures: figure crops carried for image nodes: "base64" (default), "path" (PNG
            files under `figure_dir`) or None.
        figure_dir: where crops are written with `figures="path"`.
        id_func: `(source, page or None) -> doc id`; default a UUID of `source#page=N`
            (stable, so re-ingesting a file upserts instead of duplicating).
        metadata_func: `(metadata, document, page or None) -> metadata`, applied last.
        converter_options / **options: `Converter` options (engine, model, mode, prompt, ocr,
            dpi, max_in_flight, device, max_new_tokens, pages, password).
    """

    is_remote: bool = False
    converter_options: dict[str, Any] = Field(default_factory=dict)
    export_type: ExportType = ExportType.MARKDOWN
    split_pages: bool = True
    flat_metadata: bool = True
    figures: Literal["base64", "path"] | None = "base64"
    figure_dir: str | None = None
    converter: Any = Field(default=None, exclude=True)
    id_func: Any = Field(default=None, exclude=True)
    metadata_func: Any = Field(default=None, exclude=True)
    _get_converter: Any = PrivateAttr()
    _prepare: Prepare = PrivateAttr()

    def __init__(
        self,
        *,
        converter: Any = None,
        export_type: ExportType | str = ExportType.MARKDOWN,
        split_pages: bool = True,
        flat_metadata: bool = True,
        figures: Literal["base64", "path"] | None = "base64",
        figure_dir: str | None = None,
        id_func: IdFunc | None = None,
        metadata_func: MetadataFunc | None = None,
        converter_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        options = {**(converter_options or {}), **options}
        options.pop("is_remote", None)
        super().__init__(converter=converter, converter_options=options,
                         export_type=ExportType(export_type), split_pages=split_pages,
                         flat_metadata=flat_metadata, figures=figures, figure_dir=figure_dir,
                         id_func=id_func, metadata_func=metadata_func)
        self._get_converter = make_converter(converter, options)
        self._prepare = Prepare(figures, figure_dir, options.get("password"))

    @classmethod
    def class_name(cls) -> str:
        return "DeepSeekOCRReader"

    def lazy_load_data(  # type: ignore[override]
        self,
        file_path: str | Path | Iterable[str | Path],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> Iterator[LIDocument]:
        """Yield Documents file by file, page by page.

        Args:
            file_path: a path or URL, or a list of them.
            extra_info: metadata added to every Document (and so to every node).
            fs: an fsspec filesystem to read the files through (as SimpleDirectoryReader
                passes it); None reads local paths and URLs.

        Yields:
            One Document per page (or per file with `split_pages=False`).
        """
        if extra_info is not None and not isinstance(extra_info, dict):
            raise TypeError(f"extra_info must be a dict, not {type(extra_info).__name__}")
        for prepared in convert_all(self._get_converter(), file_path, fs=fs,
                                    prepare=self._prepare):
            yield from self._documents(prepared, extra_info)

    def alazy_load_data(  # type: ignore[override]
        self,
        file_path: str | Path | Iterable[str | Path],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> AsyncDocuments:
        """The Documents of `lazy_load_data`, converted in a worker thread.

        Use `async for doc in reader.alazy_load_data(paths)` to get each page as soon as
        its file is converted, or `await reader.alazy_load_data(paths)` for the list (what
        `BaseReader.alazy_load_data` returns). The event loop never blocks.
        """
        return AsyncDocuments(lambda: self.lazy_load_data(file_path, extra_info, fs))

    async def aload_data(  # type: ignore[override]
        self,
        file_path: str | Path | Iterable[str | Path],
        extra_info: dict[str, Any] | None = None,
        fs: Any = None,
    ) -> list[LIDocument]:
        """All Documents, converted in a worker thread (the event loop never blocks)."""
        return await self.alazy_load_data(file_path, extra_info, fs)

    def _documents(self, prepared: Prepared,
                   extra_info: dict[str, Any] | None) -> Iterator[LIDocument]:
        pages: list[Page | None] = list(prepared.document.pages) if self.split_pages else [None]
        for page in pages:
            yield self._document(prepared, page, extra_info)

    def _document(self, prepared: Prepared, page: Page | None,
                  extra_info: dict[str, Any] | None) -> LIDocument:
        doc = prepared.document
        text, metadata = text_and_metadata(prepared, page, self.export_type)
        metadata.update(extra_info or {})
        if self.metadata_func is not None:
            metadata = self.metadata_func(metadata, doc, page)
        if self.flat_metadata:
            metadata = flatten(metadata)
        excluded = [k for k in NOT_EMBEDDED if k in metadata]
        make_id = self.id_func or default_id
        return LIDocument(
            id_=make_id(doc.source, page.number if page is not None else None),
            text=text,
            metadata=metadata,
            excluded_embed_metadata_keys=excluded,
            excluded_llm_metadata_keys=excluded,
        )


class AsyncDocuments:
    """Documents converted in a worker thread: `async for` them, or `await` the list."""

    def __init__(self, make: Any) -> None:
        self._make = make

    def __aiter__(self) -> AsyncIterator[LIDocument]:
        return iterate_in_thread(self._make, name="dsocr-reader")

    def __await__(self) -> Generator[Any, None, list[LIDocument]]:
        return self._collect().__await__()

    async def _collect(self) -> list[LIDocument]:
        return [doc async for doc in self]
