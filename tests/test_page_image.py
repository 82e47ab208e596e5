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


def test_upright_opaque_rgb_comes_back_as_itself_and_nothing_is_modified():
    """No copy for what needs no change (two copies of an A4 page cost ~10 ms); an RGB page
    with an orientation tag or a transparent colour still gets a new, corrected image."""
    image = Image.new("RGB", (7, 5), (12, 34, 56))
    before = image.tobytes()
    assert normalize_page_image(image) is image and image.tobytes() == before
    tagged = Image.new("RGB", (7, 5), (12, 34, 56))
    tagged.getexif()[0x0112] = 1  # "upright", said explicitly
    assert normalize_page_image(tagged) is tagged
    rotated = exif_rotated()
    assert rotated.mode == "RGB" and normalize_page_image(rotated).size == rotated.size[::-1]
    keyed = Image.new("RGB", (2, 1), (12, 34, 56))
    keyed.info["transparency"] = (12, 34, 56)  # that colour is transparent: white
    out = normalize_page_image(keyed)
    assert out is not keyed and out.getpixel((0, 0)) == (255, 255, 255)
    assert keyed.getpixel((0, 0)) == (12, 34, 56)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(TypeError, match="PIL image"):
        normalize_page_image(b"png bytes")
    with pytest.raises(ValueError, match="no pixels"):
        normalize_page_image(Image.new("RGB", (0, 5)))
