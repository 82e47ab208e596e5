"""One entry point for any input: `iter_pages` dispatches PDFs and images by their bytes.

Everything is lazy: a page is read, rendered and handed over before the next one is
touched, so a folder of thousands of long PDFs streams in constant memory. Pair it with
`prefetch` to render ahead on a background thread with a hard bound on pages in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from loaders.images import count_image_pages, iter_image_pages
from loaders.page import LoadedPage, LoaderError
from loaders.page_ranges import PageSelection
from loaders.pdf import count_pdf_pages, iter_pdf_pages
from loaders.sources import DEFAULT_MAX_PIXELS, SourceLike, detect_kind, read_source


def iter_pages(
    source: SourceLike,
    *,
    dpi: float = 144,
    pages: PageSelection = None,
    password: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    text_layer: bool | Literal["later"] = True,
    extract_tables: bool = True,
    pixel_dir: str | None = None,
) -> Iterator[LoadedPage]:
    """Yield one `LoadedPage` per page of a PDF or image, lazily, never raising for bad files.

    Args:
        source: a path, `bytes`, or a binary file-like (read whole; paths are read lazily).
        dpi: PDF render resolution (144, as the released DeepSeek-OCR scripts use).
        pages: 1-based pages ("1-3,7", 4, range(1, 5), [1, 3]); None for all. For images
            this selects TIFF frames.
        password: for encrypted PDFs.
        max_pixels: per-page pixel budget: images over it are refused, PDF pages over it
            render at a lower DPI (with a warning on the page).
        name: how to name the source in pages and errors (useful for bytes).
        text_layer: read the PDF text layer; "later": where it is first used, from the file
            (`loaders.page.LaterTextLayer`; read now for bytes or a password-protected PDF).
        extract_tables: find ruled tables in the PDF text layer (tens of ms a page).
        pixel_dir: PDF pages: their pixels written to a file in this folder instead of an
            image in memory (`LoadedPage.pixel_file`, for another process to read).

    Yields:
        `LoadedPage`s in page order. A file that cannot be read at all (missing, empty,
        unsupported, corrupt, encrypted without password, zero pages) yields exactly one
        page numbered 1 with `error` set and `error.page` None.

    Raises:
        ValueError: `pages` is malformed.
        TypeError: `source` is not a path, bytes or a binary file-like.
    """
    try:
        src = read_source(source, name)
        kind = detect_kind(src)
    except LoaderError as error:
        yield LoadedPage(source=error.source, number=1, error=error)
        return
    if kind == "pdf":
        yield from iter_pdf_pages(src, dpi=dpi, pages=pages, password=password,
                                  max_pixels=max_pixels, text_layer=text_layer,
                                  extract_tables=extract_tables, pixel_dir=pixel_dir)
    else:
        yield from iter_image_pages(src, max_pixels=max_pixels, pages=pages)


def count_pages(source: SourceLike, password: str | None = None, name: str | None = None) -> int:
    """A document's page count (TIFF frames; 1 for other images; 0 for an empty PDF), cheaply.

    Opens the file but renders and decodes nothing (TIFF frames are counted from their
    headers).

    Raises:
        LoaderError: the file cannot be read, is unsupported, or is encrypted without the
            right password.
    """
    src = read_source(source, name)
    if detect_kind(src) == "pdf":
        return count_pdf_pages(src, password)
    return count_image_pages(src)
