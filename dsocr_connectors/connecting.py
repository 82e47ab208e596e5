"""What both connectors share before any framework type: the converter, sources, page text.

The LlamaIndex reader and the LangChain loader take either a ready `converter` (anything
with `convert(source, *, name=None) -> Document`) or the `Converter` keyword options, and
build `dsocr_connectors.pipeline.Converter` only when the first file is read. With no model
configured the Converter reads the PDF text layer, and so do the connectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, Protocol

from dsocr_connectors.document import Document, Page, PageStatus

STATUS_ORDER = [PageStatus.OK, PageStatus.RECOVERED, PageStatus.FALLBACK, PageStatus.FAILED]

IdFunc = Callable[[str, int | None], str]
MetadataFunc = Callable[[dict[str, Any], Document, Page | None], dict[str, Any]]


class ExportType(str, Enum):
    """What a loaded document's text is."""

    MARKDOWN = "markdown"  # the page's Markdown; the structure rides in metadata["dsocr"]
    JSON = "json"  # the Page (or Document) JSON itself


class DocumentConverter(Protocol):
    """The part of `dsocr_connectors.pipeline.Converter` the connectors use."""

    def convert(self, source: Any, *, name: str | None = None) -> Document: ...


def make_converter(
    converter: DocumentConverter | None, options: dict[str, Any]
) -> Callable[[], DocumentConverter]:
    """A function returning the converter, building the default one on first call.

    Args:
        converter: a ready converter, or None to build `Converter(**options)` lazily (the
            Converter checks the options then, on the first file).
        options: `Converter` keyword options; must be empty when `converter` is given.

    Returns:
        A zero-argument function returning the converter.

    Raises:
        TypeError: options given together with a converter.
    """
    if converter is not None:
        if options:
            raise TypeError("pass either converter= or converter options, not both")
        return lambda: converter
    built: list[DocumentConverter] = []

    def get() -> DocumentConverter:
        if not built:
            from dsocr_connectors.pipeline import Converter

            built.append(Converter(**options))
        return built[0]

    return get


def as_paths(file_path: Any) -> list[Any]:
    """One path (str, Path) or a list/tuple of them, as a list."""
    if isinstance(file_path, (list, tuple)):
        return list(file_path)
    return [file_path]


def convert_all(
    converter: DocumentConverter, file_path: Any, *, fs: Any = None
) -> Iterator[Document]:
    """Convert each file in turn; with an fsspec `fs`, read the bytes through it."""
    for path in as_paths(file_path):
        if fs is not None:
            with fs.open(str(path), "rb") as handle:
                yield converter.convert(handle.read(), name=str(path))
        else:
            yield converter.convert(path)


def default_id(source: str, page: int | None) -> str:
    """A stable document id: the source, plus `#page=N` for a per-page document."""
    return source if page is None else f"{source}#page={page}"


def page_text(page: Page) -> str:
    """The page's Markdown, as the exporter writes it."""
    return page.to_markdown()


def worst_status(pages: list[Page]) -> str:
    """The worst status among `pages` (failed > fallback > recovered > ok)."""
    if not pages:
        return PageStatus.OK.value
    return max((p.status for p in pages), key=STATUS_ORDER.index).value
