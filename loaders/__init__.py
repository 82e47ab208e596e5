"""Files, bytes and folders -> page images plus the PDF text layer, lazily.

    from loaders import iter_sources, iter_pages, prefetch

    for path in iter_sources(["scans/", "reports/*.pdf"]):
        for page in prefetch(iter_pages(path, dpi=144), max_in_flight=4):
            if page.error:
                print(page.error)  # names the file and page; the pages after it still come
            else:
                page.image  # RGB PIL image; page.text_layer for PDFs

See docs/loaders.md for sources, options, errors and the memory bound.
"""

from loaders.images import iter_image_pages, to_rgb
from loaders.iterate import count_pages, iter_pages
from loaders.page import LayerTable, LoadedPage, LoaderError, PixelFile, TextLayer, TextSpan
from loaders.page_ranges import select_pages
from loaders.pdf import iter_pdf_pages, read_skipped_tables
from loaders.prefetch import prefetch
from loaders.sources import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    detect_kind,
    iter_sources,
)
from loaders.text_layer import is_usable_text

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "LayerTable",
    "LoadedPage",
    "LoaderError",
    "PixelFile",
    "TextLayer",
    "TextSpan",
    "count_pages",
    "detect_kind",
    "is_usable_text",
    "iter_image_pages",
    "iter_pages",
    "iter_pdf_pages",
    "iter_sources",
    "prefetch",
    "read_skipped_tables",
    "select_pages",
    "to_rgb",
]
