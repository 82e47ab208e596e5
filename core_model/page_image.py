"""A page image as every engine reads it: upright, 8-bit RGB, transparency on white.

Engines take whatever PIL image the caller has (a scan with an EXIF orientation tag, a PNG
with an alpha channel, a 16-bit grey TIFF) and must all read the same pixels from it, so that
a page gives the same output whichever engine reads it. `normalize_page_image` is that one
step: the EXIF orientation applied, transparent pixels composited on white (a bare
`convert("RGB")` turns a transparent background black), 16-bit and 32-bit grey scaled to 8
bits (a bare conversion clips them to white), then RGB. An opaque 8-bit RGB image without an
orientation tag comes back with the same pixels.

It uses PIL and numpy only (no torch), so the HTTP engine can use it on a machine without a
GPU stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageOps

WHITE = (255, 255, 255)
ORIENTATION = 0x0112  # the EXIF tag
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def load_page_image(image: Any) -> Image.Image:
    """A page image given as itself or as a function that returns it (a lazy image: pixels
    read on the thread that prepares the page)."""
    if isinstance(image, Image.Image) or not callable(image):
        return image
    return image()


def is_upright_and_opaque(image: Image.Image) -> bool:
    """Whether the image needs neither an EXIF rotation nor a background for transparency:
    in RGB (or grey, the same value in each channel) its pixels are the page as read."""
    return "transparency" not in image.info and image.getexif().get(ORIENTATION, 1) == 1


def normalize_page_image(
    image: Image.Image, *, alpha_background: tuple[int, int, int] | None = WHITE
) -> Image.Image:
    """The page upright and in 8-bit RGB, as every engine reads it.

    Args:
        image: any PIL image.
        alpha_background: colour transparent pixels are composited on; None drops the alpha
            channel as the released code does (`convert("RGB")`).

    Returns:
        The image itself when it already is upright 8-bit RGB without transparency (no copy:
        two copies of an A4 page cost ~10 ms), else a new RGB image. The input is never
        modified.

    Raises:
        TypeError: `image` is not a PIL image.
        ValueError: the image has no pixels, or a mode PIL cannot convert to RGB.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image has no pixels ({image.width}x{image.height})")
    if image.mode == "RGB" and is_upright_and_opaque(image):
        return image
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_GREY_MODES:
        image = _to_8bit_grey(image)
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    try:
        if alpha_background is not None and has_alpha:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*alpha_background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot convert an image of mode {image.mode!r} to RGB: {exc}") from exc


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image as mode "L".

    Integer images are read as 16-bit (0..65535) unless every value fits in 8 bits; float
    images as 0..1 when their maximum is at most 1, else as 0..255.
    """
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode == "F":
        scale = 255.0 if top <= 1.0 else 1.0
    else:
        scale = 1.0 if top <= 255 else 255.0 / 65535.0
    grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L")
