"""`normalize_page_image`: the page as every engine reads it, the same as the native engine's
preprocessing (`core_model.preprocess.to_rgb`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core_model.page_image import normalize_page_image
from core_model.preprocess import to_rgb


def exif_rotated(size=(40, 20), orientation=6) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.putpixel((0, 0), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


def transparent_png() -> Image.Image:
    image = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    image.putpixel((5, 5), (0, 0, 255, 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.info["transparency"] = 0
    image.putpixel((1, 1), 1)
    return image


CASES = {
    "exif rotated": exif_rotated,
    "transparent png": transparent_png,
    "palette with a transparent colour": palette_with_transparency,
    "16-bit grey": lambda: Image.fromarray(np.full((6, 9), 40000, dtype=np.uint16)),
    "float grey 0..1": lambda: Image.fromarray(np.full((6, 9), 0.5, dtype=np.float32)),
    "opaque rgb": lambda: Image.new("RGB", (7, 5), (12, 34, 56)),
    "cmyk": lambda: Image.new("CMYK", (7, 5), (0, 255, 0, 0)),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_same_pixels_as_the_native_preprocessing(make):
    ours, native = normalize_page_image(make()), to_rgb(make())
    assert ours.mode == "RGB" and ours.size == native.size
    assert ours.tobytes() == native.tobytes()


def test_exif_orientation_is_applied_and_transparency_lands_on_white():
    upright = normalize_page_image(exif_rotated())
    assert upright.size == (20, 40) and upright.getpixel((19, 0)) == (255, 0, 0)
    flat = normalize_page_image(transparent_png())
    assert flat.getpixel((0, 0)) == (255, 255, 255) and flat.getpixel((5, 5)) == (0, 0, 255)
    assert normalize_page_image(transparent_png(), alpha_background=None).getpixel((0, 0)) == (0, 0, 0)


def test_opaque_rgb_pixels_are_untouched_and_the_input_is_not_modified():
    image = Image.new("RGB", (7, 5), (12, 34, 56))
    out = normalize_page_image(image)
    assert out is not image and out.tobytes() == image.tobytes()


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(TypeError, match="PIL image"):
        normalize_page_image(b"png bytes")
    with pytest.raises(ValueError, match="no pixels"):
        normalize_page_image(Image.new("RGB", (0, 5)))
