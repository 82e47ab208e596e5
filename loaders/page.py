"""What a loader yields: one `LoadedPage` per input page, image or error, never neither.

Loaders turn files, bytes and folders into page images (pymupdf for PDFs, pillow for
images) plus the PDF text layer when there is one. They know nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from PIL import Image


class LoaderError(Exception):
    """A file or page that could not be loaded; names the file and, when known, the page."""

    def __init__(self, source: str, reason: str, page: int | None = None):
        self.source = source
        self.page = page
        self.reason = reason
        where = f"{source}, page {page}" if page is not None else source
        super().__init__(f"{where}: {reason}")


@dataclass
class TextSpan:
    """A run of text from the PDF text layer; bbox in PDF points, origin top-left."""

    text: str
    bbox: tuple[float, float, float, float]
    font: str = ""
    size: float = 0.0
    is_bold: bool = False
    block: int = 0
    line: int = 0
    is_mono: bool = False  # a monospaced font (code)


@dataclass
class LayerWord:
    """A word of the PDF text layer (split at spaces, synthesised ones included); bbox in
    PDF points on the displayed page, origin top-left; `block`/`line` as mupdf grouped it."""

    text: str
    bbox: tuple[float, float, float, float]
    block: int = 0
    line: int = 0


@dataclass
class FontStats:
    """How a page's (or a document's) text is set: characters per style, and the styles of
    short standalone lines (heading candidates). A style is (size rounded to 0.5 pt, bold)."""

    chars: dict[tuple[float, bool], int] = field(default_factory=dict)
    short_lines: dict[tuple[float, bool], int] = field(default_factory=dict)

    def add(self, other: FontStats) -> None:
        for key, n in other.chars.items():
            self.chars[key] = self.chars.get(key, 0) + n
        for key, n in other.short_lines.items():
            self.short_lines[key] = self.short_lines.get(key, 0) + n


@dataclass
class LayerTable:
    """A table found in the PDF's own content (pymupdf `find_tables`); bbox in points."""

    bbox: tuple[float, float, float, float]
    rows: list[list[str | None]] = field(default_factory=list)  # None: covered by a span
    header_rows: int = 0


@dataclass
class TextLayer:
    spans: list[TextSpan] = field(default_factory=list)
    text: str = ""
    is_usable: bool = False  # enough real text to stand in for OCR
    tables: list[LayerTable] = field(default_factory=list)
    # Regions the page draws as pictures (raster images, charts and diagrams in vector
    # drawing), in points on the displayed page, origin top-left; tables left out.
    figures: list[tuple[float, float, float, float]] = field(default_factory=list)
    words: list[LayerWord] = field(default_factory=list)
    unusable_reason: str | None = None  # why `is_usable` is False, in words
    num_removed_chars: int = 0  # control and zero-width characters left out of spans/words
    fonts: FontStats = field(default_factory=FontStats)  # this page's styles
    document_fonts: FontStats | None = None  # the styles of the whole document (a sample)
    # False: loaded with `extract_tables=False`; `loaders.read_skipped_tables` reads the
    # ruled tables (and the figures around them) from `tables_path` when they are needed.
    tables_read: bool = True
    tables_path: str | None = None


@dataclass
class LoadedPage:
    source: str  # path, or a name given for bytes
    number: int  # 1-based
    total_pages: int | None = None
    image: Image.Image | None = None  # RGB, EXIF-transposed; None when `error` is set
    width_pt: float | None = None  # PDF page size in points
    height_pt: float | None = None
    rotation: int = 0
    label: str | None = None  # the PDF page label, if any
    text_layer: TextLayer | None = None
    error: LoaderError | None = None
    # Things the caller should know though the page loaded: a repaired PDF, a lowered
    # render DPI, frames not read. Each names what happened; never used for errors.
    warnings: list[str] = field(default_factory=list)
    # (width, height) of `image` when the pixels were left behind (`without_pixels`).
    image_size: tuple[int, int] | None = None

    @property
    def pixel_size(self) -> tuple[int, int] | None:
        """(width, height) of the page image, whether or not its pixels are here."""
        return self.image.size if self.image is not None else self.image_size

    def without_pixels(self) -> LoadedPage:
        """A copy without the image but with its size: what another process needs to finish
        the page, without ~6 MB of pixels pickled for it."""
        return replace(self, image=None, image_size=self.pixel_size)
