"""What both connectors share before any framework type: converter, inputs, conversion.

The LlamaIndex reader and the LangChain loader take either a ready `converter` (anything
with `convert(source, *, name=None) -> Document`) or the `Converter` keyword options, and
build `dsocr_connectors.pipeline.Converter` only when the first file is read. With no model
configured the Converter reads the PDF text layer, and so do the connectors.

Inputs are local paths, fsspec URLs (`s3://`, `gs://`, `https://`, `memory://`: read whole
once, see `loaders.sources.read_url`) or files of an fsspec filesystem (`fs=`). Each
converted document is then prepared (`prepare`): continued tables linked, the PDF's
document information read, and figure crops cut when asked; pages that were not read
(status failed: a scan with no model configured, an engine error) are logged as a warning
with their count, since their framework documents hold no text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dsocr_connectors.document import Document, Page, PageStatus

if TYPE_CHECKING:
    from dsocr_connectors.payload import Prepared

log = logging.getLogger(__name__)

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


@dataclass
class Input:
    """One file to convert: the name recorded as its source, and a path or its bytes."""

    name: str
    source: Any


def open_input(path: Any, fs: Any = None) -> Input:
    """An input for `path`: read through `fs` (an fsspec filesystem) or fsspec (a URL),
    else a local path left for the loaders to read lazily."""
    from loaders.sources import is_url, read_url

    if fs is not None:
        with fs.open(str(path), "rb") as handle:
            return Input(str(path), handle.read())
    if is_url(path):
        try:
            return Input(str(path), read_url(str(path)))
        except Exception:  # the converter reports it as an error page naming the URL
            return Input(str(path), str(path))
    return Input(str(path), path)


@dataclass
class Prepare:
    """What to do with each converted document before it is packaged.

    Attributes:
        figures: figure crops carried as "base64", as "path" (PNG files under
            `figure_dir`), or None (no crops).
        figure_dir: the folder crops are written to with `figures="path"`.
        password: for encrypted PDFs (document information and crops).
    """

    figures: str | None = "base64"
    figure_dir: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.figures not in ("base64", "path", None):
            raise ValueError(f"figures must be 'base64', 'path' or None, not {self.figures!r}")
        if self.figures == "path" and not self.figure_dir:
            raise ValueError("figures='path' needs figure_dir=...")

    def __call__(self, doc: Document, source: Any) -> Prepared:
        from dsocr_connectors.deep.table_merge import link_continued_tables
        from dsocr_connectors.figures import figure_crops, has_figures, save_crops
        from dsocr_connectors.payload import Prepared
        from dsocr_connectors.pdf_metadata import pdf_metadata

        warning = unread_pages_warning(doc)
        if warning:
            log.warning("%s", warning)
        link_continued_tables(doc)
        if "pdf" not in doc.metadata:
            info = pdf_metadata(source, self.password)
            if info:
                doc.metadata["pdf"] = info
        crops = {}
        if self.figures and has_figures(doc):
            crops = figure_crops(doc, source, password=self.password)
            if self.figures == "path":
                assert self.figure_dir is not None
                save_crops(doc, crops, self.figure_dir, _stem(doc.source))
        return Prepared(doc, crops, self.figures)


def unread_pages_warning(doc: Document) -> str | None:
    """"report.pdf: 2 of 3 pages were not read (pages 2, 3: needs a model ...)", or None
    when every page was read."""
    failed = [page for page in doc.pages if page.status is PageStatus.FAILED]
    if not failed:
        return None
    by_reason: dict[str, list[str]] = {}
    for page in failed:
        by_reason.setdefault(page.reason or "failed", []).append(str(page.number))
    reasons = "; ".join(
        f"page{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}: {reason}"
        for reason, numbers in by_reason.items()
    )
    hint = ""
    if any(reason.startswith("needs a model") for reason in by_reason):
        hint = "; pass model=<DeepSeek-OCR folder or hub id> to read them"
    return (f"{doc.source}: {len(failed)} of {len(doc.pages)} pages were not read ({reasons})"
            f"{hint}; their documents hold no text")


def _stem(source: str) -> str:
    """A folder name for a source's crops: its file stem plus a short hash of the source."""
    import hashlib

    stem = Path(source.rstrip("/").rsplit("/", 1)[-1]).stem or "document"
    return f"{stem}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


def convert_all(converter: DocumentConverter, file_path: Any, *, fs: Any = None,
                prepare: Prepare | None = None) -> Iterator[Prepared]:
    """Convert and prepare each file in turn (see `open_input` and `Prepare`)."""
    prepare = prepare or Prepare()
    for path in as_paths(file_path):
        item = open_input(path, fs)
        if isinstance(item.source, bytes):
            doc = converter.convert(item.source, name=item.name)
        else:
            doc = converter.convert(item.source)
        yield prepare(doc, item.source)


def default_id(source: str, page: int | None) -> str:
    """A stable document id: a UUID of the source, plus `#page=N` for a per-page document
    (see `dsocr_connectors.metadata.stable_id`)."""
    from dsocr_connectors.metadata import stable_id

    return stable_id(source if page is None else f"{source}#page={page}")


def page_text(page: Page) -> str:
    """The page's Markdown, as the exporter writes it, without the HTML comments that mark a
    loop cut (text that gets embedded; the cut stays in the flags and repairs) and without the
    note a failed page opens with (that goes to the log: `unread_pages_warning`)."""
    return page.to_markdown(loop_marker=False, failed_notes=False)


def worst_status(pages: list[Page]) -> str:
    """The worst status among `pages` (failed > fallback > recovered > ok)."""
    if not pages:
        return PageStatus.OK.value
    return max((p.status for p in pages), key=STATUS_ORDER.index).value
