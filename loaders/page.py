"""What a loader yields: one `LoadedPage` per input page, image or error, never neither.

Loaders turn files, bytes and folders into page images (pymupdf for PDFs, pillow for
images) plus the PDF text layer when there is one. They know nothing of the model.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from typing import Any

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


class PackedTextLayer:
    """A `TextLayer` kept as its pickle while it crosses processes, unpickled where it is used.

    Loading processes send each page's text layer this way: the engine's process, which only
    asks whether the layer is usable, never builds its few thousand objects (nor pickles
    them again for the finishing processes, which unpickle it once). Reading any other
    attribute unpickles it here, after which it crosses as the `TextLayer` it has become
    (so that a change made here is not lost); writing one goes to the unpickled layer.
    """

    __slots__ = ("_data", "_layer", "_usable", "_reason")

    def __init__(self, data: bytes, is_usable: bool, unusable_reason: str | None) -> None:
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_layer", None)
        object.__setattr__(self, "_usable", is_usable)
        object.__setattr__(self, "_reason", unusable_reason)

    @classmethod
    def pack(cls, layer: TextLayer) -> PackedTextLayer:
        return cls(pickle.dumps(layer, protocol=pickle.HIGHEST_PROTOCOL), layer.is_usable,
                   layer.unusable_reason)

    def unpack(self) -> TextLayer:
        if self._layer is None:
            object.__setattr__(self, "_layer", pickle.loads(self._data))
            object.__setattr__(self, "_data", None)
        return self._layer

    @property
    def is_usable(self) -> bool:
        return self._usable if self._layer is None else self._layer.is_usable

    @property
    def unusable_reason(self) -> str | None:
        return self._reason if self._layer is None else self._layer.unusable_reason

    def __getattr__(self, name: str) -> Any:  # only for names not found above
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.unpack(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.unpack(), name, value)

    def __reduce__(self) -> tuple:
        if self._layer is not None:
            return _same, (self._layer,)
        return PackedTextLayer, (self._data, self._usable, self._reason)

    def __eq__(self, other: object) -> bool:
        other = other.unpack() if isinstance(other, PackedTextLayer) else other
        return self.unpack() == other

    __hash__ = None  # type: ignore[assignment]  # as the dataclass it stands for


def _same(layer: TextLayer) -> TextLayer:
    return layer


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
    text_layer: TextLayer | None = None  # or a `PackedTextLayer` from a loading process
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
