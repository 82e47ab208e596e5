"""PDF pages through pymupdf: rendered one at a time, with the page's own text layer.

Pages render at `dpi` (144 by default, as in the released DeepSeek-OCR scripts) with the
page's /Rotate applied; a page too large for `max_pixels` renders at the highest DPI that
fits, and says so in `LoadedPage.warnings`. Every requested page yields exactly one
`LoadedPage`; whatever fails (an encrypted file without its password, a page mupdf
cannot rebuild) becomes a page with `error` set, naming file and page, and the next page
is tried. Whole-file failures yield a single error page numbered 1 whose `error.page`
is None.

mupdf is not thread-safe, so every call into it holds one module lock; prefetching
on a background thread is safe, parallel rendering is not attempted.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from PIL import Image

from loaders.mupdf import pymupdf
from loaders.page import FontStats, LaterTextLayer, LoadedPage, LoaderError, PixelFile, TextLayer
from loaders.page_ranges import PageSelection, select_pages
from loaders.sources import DEFAULT_MAX_PIXELS, Source, SourceLike, read_source
from loaders.text_layer import (
    document_fonts,
    extract_text_layer,
    find_layer_figures,
    find_layer_tables,
)

logger = logging.getLogger(__name__)

MUPDF_LOCK = threading.RLock()
_MAX_WARNINGS = 5  # mupdf lines kept per page; a damaged page can emit hundreds


def iter_pdf_pages(
    source: SourceLike | Source,
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
    """Render a PDF page by page, lazily, with each page's text layer.

    Args:
        source: a path (read by mupdf on demand), bytes, a binary file-like, or a `Source`.
        dpi: render resolution; points * dpi / 72 pixels.
        pages: which 1-based pages, e.g. "1-3,7", 4, range(1, 5); None for all. A number
            past the end yields an error page.
        password: the user or owner password of an encrypted PDF.
        max_pixels: pixel budget of one rendered page; larger pages render at lower DPI.
        name: how to name the source in pages and errors (default: the path or "<bytes>").
        text_layer: read the text layer (spans, text, usability); "later": read it from
            the file where it is first used (`LaterTextLayer`; a PDF given as bytes or with
            a password has it read now).
        extract_tables: also find ruled tables in the page's vector content.
        pixel_dir: write each page's pixels to a new file in this folder (`pixel_file`)
            instead of making the image (for another process to read); where a file cannot
            be written, the page has its image as usual.

    Yields:
        One `LoadedPage` per selected page, in selection order.

    Raises:
        ValueError: `pages` is malformed (a usage error, not a file error).
    """
    try:
        src = source if isinstance(source, Source) else read_source(source, name)
        doc = open_pdf(src, password)
    except LoaderError as error:
        yield LoadedPage(source=error.source, number=1, error=error)
        return
    try:
        try:
            total = _page_count(doc, src.name)
        except LoaderError as error:
            yield LoadedPage(source=src.name, number=1, error=error)
            return
        if total == 0:
            reason = "no pages (mupdf could not recover any)" if doc.is_repaired else "no pages"
            yield _failed(src.name, 1, 0, reason, whole_file=True)
            return
        path = str(src.path) if src.path is not None else None
        if text_layer == "later" and (path is None or password is not None):
            text_layer = True  # nothing to read it from later (or no password to keep)
        fonts = _document_fonts(doc) if text_layer is True else None
        file_warnings = []
        if doc.is_repaired:
            file_warnings.append("damaged PDF repaired by mupdf; pages may be incomplete")
        for number in select_pages(pages, total):
            if number > total:
                yield _failed(src.name, number, total, f"no such page (the PDF has {total})")
                continue
            yield _load_page(doc, src.name, number, total, dpi, max_pixels, text_layer,
                             extract_tables, file_warnings, fonts, path, pixel_dir)
    finally:
        with MUPDF_LOCK:
            doc.close()


def count_pdf_pages(source: SourceLike | Source, password: str | None = None,
                    name: str | None = None) -> int:
    """The page count, without rendering anything; raises LoaderError like `open_pdf`."""
    src = source if isinstance(source, Source) else read_source(source, name)
    doc = open_pdf(src, password)
    try:
        return _page_count(doc, src.name)
    finally:
        with MUPDF_LOCK:
            doc.close()


def open_pdf(src: Source, password: str | None = None) -> pymupdf.Document:
    """Open and, when encrypted, unlock a PDF; raises LoaderError naming the file."""
    with MUPDF_LOCK, _mupdf_quiet():
        try:
            if src.data is not None:
                doc = pymupdf.open(stream=src.data, filetype="pdf")
            else:
                doc = pymupdf.open(src.path, filetype="pdf")
        except pymupdf.EmptyFileError as e:
            raise LoaderError(src.name, "empty file (0 bytes)") from e
        except Exception as e:  # mupdf raises several types for unreadable files
            detail = _mupdf_messages() or str(e)
            reason = f"not a readable PDF (corrupt or truncated): {detail}"
            raise LoaderError(src.name, reason) from e
        if doc.needs_pass:
            if password is None:
                doc.close()
                raise LoaderError(src.name, "encrypted PDF: a password is needed")
            if not doc.authenticate(password):
                doc.close()
                raise LoaderError(src.name, "encrypted PDF: the password is wrong")
        return doc


def _page_count(doc: pymupdf.Document, name: str) -> int:
    with MUPDF_LOCK, _mupdf_quiet():
        try:
            return doc.page_count
        except Exception as e:  # a page tree mupdf cannot walk
            detail = _mupdf_messages() or f"{type(e).__name__}: {e}"
            raise LoaderError(name, f"cannot count pages (damaged page tree): {detail}") from e


def _load_page(doc: pymupdf.Document, name: str, number: int, total: int, dpi: float,
               max_pixels: int, text_layer: bool | str, extract_tables: bool,
               file_warnings: list[str], fonts: FontStats | None = None,
               path: str | None = None, pixel_dir: str | None = None) -> LoadedPage:
    with MUPDF_LOCK, _mupdf_quiet():
        try:
            if doc.is_repaired:
                _check_page_object(doc, name, number)
            page = doc.load_page(number - 1)
            width_pt, height_pt = page.rect.width, page.rect.height
            if width_pt <= 0 or height_pt <= 0:
                return _failed(name, number, total, f"page has no area ({page.rect})")
            warnings = list(file_warnings)
            zoom = dpi / 72
            if width_pt * zoom * height_pt * zoom > max_pixels:
                zoom = math.sqrt(max_pixels / (width_pt * height_pt)) * 0.999  # rounding slack
                warnings.append(
                    f"page of {width_pt:.0f}x{height_pt:.0f} pt rendered at {zoom * 72:.1f} dpi "
                    f"instead of {dpi:g} to stay under max_pixels={max_pixels}"
                )
                logger.warning("%s, page %d: %s", name, number, warnings[-1])
            pixmap = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            if pixmap.width < 1 or pixmap.height < 1:
                return _failed(name, number, total, "page renders to an empty image")
            image, pixel_file = _pixels(pixmap, zoom * 72, pixel_dir)
            del pixmap
            if text_layer == "later" and path is not None:
                layer = LaterTextLayer(path, number)
            else:
                layer = _read_text_layer(page, bool(text_layer), extract_tables, warnings, path)
                if layer is not None:
                    layer.document_fonts = fonts
            label = page.get_label() or None
            rotation = page.rotation
        except LoaderError as error:
            return LoadedPage(source=name, number=number, total_pages=total, error=error)
        except Exception as e:  # any mupdf failure on this page becomes this page's error
            detail = _mupdf_messages() or f"{type(e).__name__}: {e}"
            return _failed(name, number, total, f"cannot render: {detail}")
        messages = _mupdf_messages()
    if messages:
        warnings.append(f"mupdf: {messages}")
    return LoadedPage(
        source=name,
        number=number,
        total_pages=total,
        image=image,
        pixel_file=pixel_file,
        width_pt=width_pt,
        height_pt=height_pt,
        rotation=rotation,
        label=label,
        text_layer=layer,
        warnings=warnings,
    )


def _pixels(pixmap: pymupdf.Pixmap, dpi: float,
            pixel_dir: str | None) -> tuple[Image.Image | None, PixelFile | None]:
    """The rendered page as an RGB image, or (`pixel_dir`) its pixels written to a file."""
    size, info = (pixmap.width, pixmap.height), {"dpi": (dpi, dpi)}
    if pixel_dir is not None and pixmap.n == 3 and pixmap.stride == 3 * pixmap.width:
        written = PixelFile.write(pixmap.samples_mv, "RGB", size, info, pixel_dir)
        if written is not None:
            return None, written
    # Not filled first (every pixel is written next): a fresh zero-filled A4 image costs
    # more than the copy on machines where first touches of memory are slow.
    image = Image.new("RGB", size, None)
    image.frombytes(pixmap.samples)
    image.info.update(info)
    return image, None


def _read_text_layer(page: pymupdf.Page, text_layer: bool, extract_tables: bool,
                     warnings: list[str], path: str | None = None) -> TextLayer | None:
    """The text layer, or None with a warning: a broken text layer must not cost the image."""
    if not text_layer:
        return None
    try:
        layer = extract_text_layer(page)
    except Exception as e:
        warnings.append(f"text layer not read ({type(e).__name__}: {e})")
        return None
    if not extract_tables:
        layer.tables_read, layer.tables_path = False, path
        return layer
    _find_tables_and_figures(page, layer, warnings)
    return layer


def _find_tables_and_figures(page: pymupdf.Page, layer: TextLayer, warnings: list[str]) -> None:
    if layer.spans:
        try:
            layer.tables = find_layer_tables(page, layer.spans, layer.words)
        except Exception as e:
            warnings.append(f"tables not read ({type(e).__name__}: {e})")
    try:
        layer.figures = find_layer_figures(page, layer.tables)
    except Exception as e:
        warnings.append(f"figure regions not read ({type(e).__name__}: {e})")


def read_page_text_layer(path: str, number: int) -> TextLayer:
    """The text layer of page `number` of the PDF at `path`, as a load with
    `extract_tables=False` has it (the ruled tables are read when a fallback needs them:
    `read_skipped_tables`), read now for a page loaded with `text_layer="later"`. A file or
    page that cannot be read again gives an empty layer whose `unusable_reason` says why."""
    warnings: list[str] = []
    try:
        with MUPDF_LOCK:  # also guards the open documents kept (none is closed meanwhile)
            doc, fonts = _open_for_text(path, os.stat(path).st_mtime_ns)
            with _mupdf_quiet():
                layer = _read_text_layer(doc.load_page(number - 1), True, False, warnings, path)
    except Exception as e:  # a file changed or gone since loading
        reason = e.reason if isinstance(e, LoaderError) else f"{type(e).__name__}: {e}"
        return TextLayer(unusable_reason=f"text layer not read ({reason})", tables_read=True)
    if layer is None:
        return TextLayer(unusable_reason=f"text layer not read ({'; '.join(warnings)})",
                         tables_read=True)
    layer.document_fonts = fonts
    return layer


_TEXT_DOCS_KEPT = 4
# Open PDFs and their document fonts for later text layers, by (path, mtime); MUPDF_LOCK guards it.
_text_docs: OrderedDict[tuple[str, int], tuple[pymupdf.Document, FontStats | None]] = OrderedDict()


def _open_for_text(path: str, mtime_ns: int) -> tuple[pymupdf.Document, FontStats | None]:
    """An open PDF and its document fonts, kept for the next pages of the same file (a
    finishing process reads the text layers of one document's pages one after another);
    the least recently used of more than a few is closed. The caller holds MUPDF_LOCK."""
    key = (path, mtime_ns)
    if key in _text_docs:
        _text_docs.move_to_end(key)
        return _text_docs[key]
    doc = open_pdf(Source(name=path, path=Path(path)))
    _text_docs[key] = entry = (doc, _document_fonts(doc))
    while len(_text_docs) > _TEXT_DOCS_KEPT:
        _text_docs.popitem(last=False)[1][0].close()
    return entry


def close_text_documents() -> None:
    """Close the PDFs kept open for later text layers (`read_page_text_layer`), so that none
    stays open (and, on Windows, locked) after a conversion."""
    with MUPDF_LOCK:
        while _text_docs:
            _text_docs.popitem()[1][0].close()


def read_skipped_tables(loaded: LoadedPage) -> None:
    """Read the ruled tables and figure regions of a page loaded with `extract_tables=False`
    from its file, in place (the text path needs them; a model reading the page does not,
    and finding ruled tables is most of the cost of loading a page with tables). A page
    whose file cannot be read again keeps none, and says so in its warnings."""
    layer = loaded.text_layer
    if layer is None or layer.tables_read:
        return
    layer.tables_read = True
    if layer.tables_path is None:
        loaded.warnings.append("tables and figure regions of the text layer not read "
                               "(loaded from memory without them)")
        return
    try:
        doc = open_pdf(Source(name=loaded.source, path=Path(layer.tables_path)))
    except LoaderError as error:
        loaded.warnings.append(f"tables not read ({error.reason})")
        return
    try:
        with MUPDF_LOCK, _mupdf_quiet():
            _find_tables_and_figures(doc.load_page(loaded.number - 1), layer, loaded.warnings)
    except Exception as e:
        loaded.warnings.append(f"tables not read ({type(e).__name__}: {e})")
    finally:
        with MUPDF_LOCK:
            doc.close()


def _document_fonts(doc: pymupdf.Document) -> FontStats | None:
    """The document's text styles from a sample of pages; None if mupdf cannot read them
    (each page then names its headings on its own)."""
    with MUPDF_LOCK, _mupdf_quiet():
        try:
            return document_fonts(doc)
        except Exception:  # a damaged page: its own load reports it
            _mupdf_messages()
            return None


def _check_page_object(doc: pymupdf.Document, name: str, number: int) -> None:
    """In a repaired file, a page whose object is gone renders as a blank page: refuse it."""
    try:
        doc.xref_object(doc.page_xref(number - 1))
    except Exception as e:
        raise LoaderError(
            name, "page object missing (file truncated or damaged)", number
        ) from e


def _failed(name: str, number: int, total: int | None, reason: str,
            whole_file: bool = False) -> LoadedPage:
    error = LoaderError(name, reason, None if whole_file else number)
    return LoadedPage(source=name, number=number, total_pages=total, error=error)


@contextmanager
def _mupdf_quiet():
    """Collect mupdf's messages instead of printing them; `_mupdf_messages` reads them."""
    show_errors = pymupdf.TOOLS.mupdf_display_errors()
    show_warnings = pymupdf.TOOLS.mupdf_display_warnings()
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        yield
    finally:
        pymupdf.TOOLS.mupdf_display_errors(show_errors)
        pymupdf.TOOLS.mupdf_display_warnings(show_warnings)


def _mupdf_messages() -> str:
    lines = [
        line for line in pymupdf.TOOLS.mupdf_warnings(reset=True).splitlines()
        if line and not line.startswith("... repeated")
    ]
    unique = list(dict.fromkeys(lines))
    more = f" (+{len(unique) - _MAX_WARNINGS} more)" if len(unique) > _MAX_WARNINGS else ""
    return "; ".join(unique[:_MAX_WARNINGS]) + more
