"""Image files through pillow: PNG, JPEG, TIFF (one page per frame), WebP, BMP, GIF.

Each frame is checked against `max_pixels` from its header, before any pixel is decoded
(pillow's own bomb check is replaced by ours, so the error names the file), then decoded,
EXIF-transposed and converted to 8-bit RGB: 16-bit and float greys are scaled to 0..255,
CMYK and palettes converted, transparency composited on white. Only TIFF is multi-page;
an animated GIF, WebP or PNG yields its first frame with a warning saying how many were
skipped. A file that fails to decode yields an error page naming file and page.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from loaders.page import LoadedPage, LoaderError
from loaders.page_ranges import PageSelection, select_pages
from loaders.sources import DEFAULT_MAX_PIXELS, Source, SourceLike, read_source

if TYPE_CHECKING:
    import numpy as np

_MULTIPAGE_FORMATS = frozenset({"TIFF"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_EXIF_ROTATION = {3: 180, 6: 90, 8: 270}  # EXIF orientation -> clockwise quarter turns
_BOMB_CHECK_LOCK = threading.Lock()


def iter_image_pages(
    source: SourceLike | Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    pages: PageSelection = None,
) -> Iterator[LoadedPage]:
    """Decode an image file lazily, one `LoadedPage` per page (TIFF frame), RGB.

    Args:
        source: a path, bytes, a binary file-like, or a `Source`.
        max_pixels: width * height above which a frame is refused (decompression bombs).
        name: how to name the source in pages and errors.
        pages: which frames of a multi-page TIFF, as for PDFs ("1-3", 2, ...).

    Yields:
        One `LoadedPage` per selected frame; an error page when the file or a frame fails.
    """
    try:
        src = source if isinstance(source, Source) else read_source(source, name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = _open(src)
            num_frames = _count_frames(image, src.name)
    except LoaderError as error:
        yield LoadedPage(source=error.source, number=1, error=error)
        return
    try:
        file_warnings = [f"pillow: {w.message}" for w in caught]
        if image.format not in _MULTIPAGE_FORMATS and num_frames > 1:
            skipped = num_frames - 1
            file_warnings.append(f"animated {image.format}: first frame read, {skipped} skipped")
            num_frames = 1
        for number in select_pages(pages, num_frames):
            if number > num_frames:
                error = LoaderError(src.name, f"no such page (the image has {num_frames})", number)
                yield LoadedPage(source=src.name, number=number, total_pages=num_frames,
                                 error=error)
                continue
            yield _load_frame(image, src.name, number, num_frames, max_pixels, file_warnings)
    finally:
        image.close()


def count_image_pages(source: SourceLike | Source, name: str | None = None) -> int:
    """Frames of a TIFF, 1 for any other image; raises LoaderError for unreadable files."""
    src = source if isinstance(source, Source) else read_source(source, name)
    with _open(src) as image:
        return _count_frames(image, src.name) if image.format in _MULTIPAGE_FORMATS else 1


def _count_frames(image: Image.Image, name: str) -> int:
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except Exception as e:  # pillow walks every TIFF directory to count them
        image.close()
        raise LoaderError(name, f"cannot count frames ({type(e).__name__}: {e})") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """Any pillow mode as 8-bit RGB: high-bit-depth scaled, alpha composited on white.

    'I;16*' and 'I' are read as 16-bit (0..65535 -> 0..255); 'F' as 0..1 when its
    maximum is at most 1, else as 0..255. Raises ValueError for a mode pillow cannot
    convert to RGB.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I") or mode == "F":
        import numpy as np  # here: only 16-bit and float images need it

        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    import numpy as np

    values = pixels.astype(np.float64)
    if mode == "F":
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    return np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)


def _open(src: Source) -> Image.Image:
    """Open without decoding; pillow's global bomb check is lifted, ours follows per frame."""
    fp = io.BytesIO(src.data) if src.data is not None else src.path
    if src.data is not None and not src.data:
        raise LoaderError(src.name, "empty file (0 bytes)")
    with _without_pillow_bomb_check():
        try:
            return Image.open(fp)
        except FileNotFoundError as e:
            raise LoaderError(src.name, "no such file") from e
        except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError, ...
            empty = src.path is not None and src.path.stat().st_size == 0
            reason = "empty file (0 bytes)" if empty else f"not a readable image: {e}"
            raise LoaderError(src.name, reason) from e


def _load_frame(image: Image.Image, name: str, number: int, total: int, max_pixels: int,
                file_warnings: list[str]) -> LoadedPage:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        page = _decode_frame(image, name, number, total, max_pixels)
    if page.image is not None:
        page.warnings = file_warnings + [f"pillow: {w.message}" for w in caught]
    return page


def _decode_frame(image: Image.Image, name: str, number: int, total: int,
                  max_pixels: int) -> LoadedPage:
    try:
        image.seek(number - 1)
        width, height = image.size
        if width * height > max_pixels:
            raise LoaderError(
                name,
                f"image of {width}x{height} = {width * height} pixels is over "
                f"max_pixels={max_pixels} (possible decompression bomb); not decoded",
                number,
            )
        with _without_pillow_bomb_check():
            image.load()
        orientation = image.getexif().get(0x0112, 1)
        rgb = to_rgb(ImageOps.exif_transpose(image))
        if rgb is image:
            rgb = image.copy()  # the file's frame buffer is reused by the next seek
    except LoaderError as error:
        return LoadedPage(source=name, number=number, total_pages=total, error=error)
    except Exception as e:  # pillow raises OSError, SyntaxError, ValueError, EOFError, ...
        reason = f"cannot decode ({type(e).__name__}: {e}); the file is truncated or corrupt"
        error = LoaderError(name, reason, number)
        return LoadedPage(source=name, number=number, total_pages=total, error=error)
    return LoadedPage(
        source=name,
        number=number,
        total_pages=total,
        image=rgb,
        rotation=_EXIF_ROTATION.get(orientation, 0),
    )


@contextmanager
def _without_pillow_bomb_check():
    with _BOMB_CHECK_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved
