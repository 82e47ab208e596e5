"""What a loader yields: one `LoadedPage` per input page, image (or its pixel file) or error,
never neither.

Loaders turn files, bytes and folders into page images (pymupdf for PDFs, pillow for
images) plus the PDF text layer when there is one. They know nothing of the model.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
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


class LaterTextLayer(PackedTextLayer):
    """A PDF page's text layer read from its file where it is first used: a page loaded with
    `text_layer="later"` (the model reads every page, so nothing needs the layer until the
    page's result is checked against it, in a finishing process). Reading the layer costs
    about twice as much as rendering the page (18 against 8 ms on the H200 host); deferred,
    it is done beside the GPU's decoding instead of before the page reaches the engine. It crosses processes as its file's name
    and page number until read, and as the `TextLayer` it has become after.
    """

    __slots__ = ()

    def __init__(self, path: str, number: int) -> None:
        super().__init__(None, False, None)  # type: ignore[arg-type]
        object.__setattr__(self, "_data", (path, number))

    def unpack(self) -> TextLayer:
        if self._layer is None:
            from loaders.pdf import read_page_text_layer

            object.__setattr__(self, "_layer", read_page_text_layer(*self._data))
        return self._layer

    @property
    def is_usable(self) -> bool:
        return self.unpack().is_usable

    @property
    def unusable_reason(self) -> str | None:
        return self.unpack().unusable_reason

    def __reduce__(self) -> tuple:
        if self._layer is not None:
            return _same, (self._layer,)
        return LaterTextLayer, self._data


@dataclass(frozen=True)
class PixelFile:
    """A page image's raw pixels in a file (in shared memory where there is room), read only
    where they are needed.

    A loading process writes each page's pixels to such a file and sends its name: the
    process that receives the page never builds the image (~6 MB of fresh memory an A4 page,
    whose page faults and copy held its GIL for ~9 ms a page on the H200 host); the engine's
    preparing thread reads it (`read`, or calling the object, so that an engine can take it as
    a lazy image), and so can a finishing process cutting figure crops. The file lives until
    the page is final (`LoadedPage.drop_pixels`) or its pool closes.
    """

    path: str
    mode: str
    size: tuple[int, int]
    info: dict = field(default_factory=dict)

    def read(self) -> Image.Image:
        """The image (mode, size and info as written)."""
        with open(self.path, "rb") as f:
            data = f.read()
        image = Image.new(self.mode, self.size, None)  # not filled: every pixel is written next
        image.frombytes(data)
        image.info.update(self.info)
        return image

    __call__ = read  # a lazy image: `core_model.page_image.load_page_image` calls it

    def rgb_array(self) -> np.ndarray | None:
        """The pixels as an (H, W, C) uint8 array, read in one call without building an image,
        when they are 8-bit RGB (C = 3) or grey (C = 1, the same in every channel of RGB) with
        nothing that would change them (transparency, an EXIF orientation); None otherwise.
        What `core_model.device_views` copies to the GPU.

        Raises:
            ValueError: The file does not hold the pixels its size says.
        """
        channels = {"RGB": 3, "L": 1}.get(self.mode)
        if channels is None or "transparency" in self.info or "exif" in self.info:
            return None
        width, height = self.size
        data = np.fromfile(self.path, dtype=np.uint8)  # one read, without the GIL
        if data.size != width * height * channels:
            raise ValueError(f"{self.path}: {data.size} bytes of pixels for a {width}x{height} "
                             f"{self.mode} page")
        return data.reshape(height, width, channels)

    def delete(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    @classmethod
    def write(cls, data: Any, mode: str, size: tuple[int, int], info: dict,
              folder: str) -> PixelFile | None:
        """Raw pixels (`data`: bytes or a buffer, rows packed) in a new file in `folder`; None
        where it cannot be written (no room): the caller keeps the image then."""
        try:
            fd, path = tempfile.mkstemp(dir=folder, suffix=".pixels")
        except OSError:
            return None
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return cls(path, mode, size, dict(info))

    @classmethod
    def of(cls, image: Image.Image, folder: str) -> PixelFile | None:
        """`image`'s pixels in a new file in `folder`; None for an image whose raw bytes
        would not say everything (a palette, an unusual mode) or that cannot be written."""
        if image.palette is not None or image.mode not in ("RGB", "RGBA", "L", "LA"):
            return None
        return cls.write(image.tobytes(), image.mode, image.size, image.info, folder)


@dataclass
class LoadedPage:
    source: str  # path, or a name given for bytes
    number: int  # 1-based
    total_pages: int | None = None
    # RGB, EXIF-transposed; None when `error` is set or the pixels are in `pixel_file`
    image: Image.Image | None = None
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
    # The image's pixels still in a file (from a loading process), in place of `image`.
    pixel_file: PixelFile | None = None

    @property
    def pixel_size(self) -> tuple[int, int] | None:
        """(width, height) of the page image, whether or not its pixels are here."""
        if self.image is not None:
            return self.image.size
        return self.pixel_file.size if self.pixel_file is not None else self.image_size

    @property
    def has_pixels(self) -> bool:
        """Whether the page image can be had here (in memory or in its file)."""
        return self.image is not None or self.pixel_file is not None

    @property
    def image_source(self) -> Image.Image | PixelFile | None:
        """What an engine reads: the image, or its pixel file, which an engine that takes
        lazy images reads on its own thread."""
        return self.image if self.image is not None else self.pixel_file

    def load_image(self) -> Image.Image | None:
        """The page image: the one in memory, else read from its file (not kept)."""
        if self.image is not None or self.pixel_file is None:
            return self.image
        return self.pixel_file.read()

    def drop_pixels(self) -> None:
        """Free the image and delete its pixel file (the page is final)."""
        self.image = None
        if self.pixel_file is not None:
            self.pixel_file.delete()
            self.pixel_file = None

    def without_pixels(self) -> LoadedPage:
        """A copy without the image in memory but with its size (and its pixel file, a name):
        what another process needs to finish the page, without ~6 MB of pixels pickled."""
        return replace(self, image=None, image_size=self.pixel_size)
