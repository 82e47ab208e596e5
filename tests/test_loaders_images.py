"""Image loading: every format and pixel mode to RGB, EXIF turns, frames, limits, damage.

Every image is made here with pillow.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from loaders import count_pages, iter_image_pages, iter_pages, to_rgb

COLOR = (200, 40, 90)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def load_one(data: bytes, **kwargs):
    [page] = list(iter_pages(data, name="img", **kwargs))
    assert page.error is None, page.error
    assert page.image.mode == "RGB"
    return page


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF"])
def test_every_format_loads_as_rgb_with_its_colors(fmt):
    image = Image.new("RGB", (64, 48), COLOR)
    page = load_one(encode(image, fmt))
    assert page.image.size == (64, 48) and page.number == 1 and page.total_pages == 1
    assert page.text_layer is None and page.width_pt is None
    tolerance = 40 if fmt in ("GIF", "JPEG", "WEBP") else 0  # palette and lossy codecs
    assert np.abs(np.asarray(page.image)[24, 32].astype(int) - COLOR).max() <= tolerance


def test_multipage_tiff_is_one_page_per_frame_and_selectable():
    frames = [Image.new("L", (40, 30), value) for value in (0, 128, 255)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    pages = list(iter_pages(data))
    assert [p.number for p in pages] == [1, 2, 3] and pages[0].total_pages == 3
    assert [p.image.getpixel((5, 5)) for p in pages] == [(0, 0, 0), (128,) * 3, (255,) * 3]
    assert pages[0].image is not pages[1].image
    assert [p.number for p in iter_pages(data, pages="2-")] == [2, 3]
    assert count_pages(data) == 3


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_yield_their_first_frame_and_say_so(fmt):
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))] * 2
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    page = load_one(data)
    assert page.image.getpixel((16, 16))[0] > 200  # red: the first frame
    assert page.warnings == [f"animated {fmt}: first frame read, 3 skipped"]
    assert count_pages(data) == 1


def test_16_bit_grey_is_scaled_not_clipped():
    pixels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    assert [to_rgb(image).getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]
    page = load_one(encode(image, "PNG"))  # pillow reads 16-bit PNG back as I or I;16
    assert [page.image.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]


def test_32_bit_int_and_float_modes():
    as_int = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert to_rgb(as_int).getpixel((1, 0)) == (255, 255, 255)
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert [to_rgb(unit).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    page = load_one(encode(unit, "TIFF"))
    assert page.image.getpixel((2, 0)) == (255, 255, 255)


def test_cmyk_converts_to_rgb():
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    for fmt in ("JPEG", "TIFF"):
        red, green, blue = load_one(encode(cyan, fmt)).image.getpixel((8, 8))
        assert red < 30 and green > 220 and blue > 220


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((10, 20, 30, 255), (0, 0, 10, 10))
    page = load_one(encode(rgba, "PNG"))
    assert page.image.getpixel((2, 2)) == (10, 20, 30)
    assert page.image.getpixel((15, 2)) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (0, 0))
    assert load_one(encode(la, "PNG")).image.getpixel((1, 1)) == (255, 255, 255)
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert load_one(encode(half, "PNG")).image.getpixel((1, 1)) == (127, 127, 127)


def test_palette_with_transparent_index_and_bilevel():
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (0, 0, 4, 8))
    page = load_one(encode(palette, "PNG", transparency=0))
    assert page.image.getpixel((1, 1)) == (255, 0, 0)
    assert page.image.getpixel((6, 1)) == (255, 255, 255)  # index 0 is transparent
    bilevel = Image.new("1", (8, 8), 0)
    assert load_one(encode(bilevel, "TIFF")).image.getpixel((1, 1)) == (0, 0, 0)


def test_exif_orientation_is_applied_and_reported():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 10, 10))  # a black mark top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    page = load_one(encode(image, "JPEG", exif=exif, quality=95))
    assert page.image.size == (20, 40) and page.rotation == 90
    assert page.image.getpixel((15, 5))[0] < 60  # the mark is now top-right
    assert page.image.getpixel((5, 5))[0] > 200


def test_over_the_pixel_limit_is_refused_before_decoding():
    data = _png_header_only(60_000, 50_000)  # claims 3 Gpx; has no pixel data at all
    [page] = list(iter_pages(data, name="bomb.png"))
    assert page.image is None and page.number == 1
    assert "bomb.png, page 1: image of 60000x50000 = 3000000000 pixels" in str(page.error)
    assert "max_pixels" in str(page.error)
    assert Image.MAX_IMAGE_PIXELS is not None  # pillow's own guard is put back
    small = encode(Image.new("RGB", (300, 300)), "PNG")
    [page] = list(iter_image_pages(small, max_pixels=10_000, name="big.png"))
    assert "big.png, page 1" in str(page.error) and "90000 pixels" in str(page.error)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "WEBP", "BMP"])
def test_truncated_images_give_an_error_naming_file_and_page(fmt):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = encode(noise, fmt)
    [page] = list(iter_pages(data[: len(data) // 2], name=f"cut.{fmt.lower()}"))
    assert page.image is None
    assert str(page.error).startswith(f"cut.{fmt.lower()}")
    assert "truncated" in str(page.error) or "not a readable image" in str(page.error)


def test_unreadable_image_bytes_and_bytes_or_file_like_input(tmp_path):
    [page] = list(iter_image_pages(b"\x89PNG\r\n\x1a\nnot really", name="x.png"))
    assert str(page.error).startswith("x.png: not a readable image")
    data = encode(Image.new("RGB", (8, 8), COLOR), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    with open(path, "rb") as f:
        from_file = next(iter_pages(f))
    assert from_file.source == str(path) and from_file.image.getpixel((1, 1)) == COLOR
    assert next(iter_pages(data)).source == "<bytes>"
    assert next(iter_pages(path)).image.size == (8, 8)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_tiff_frame_over_the_limit_fails_alone():
    frames = [Image.new("RGB", size, COLOR) for size in ((10, 10), (100, 100), (12, 12))]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    pages = list(iter_pages(data, name="mixed.tif", max_pixels=1_000))
    assert [p.number for p in pages] == [1, 2, 3]
    assert pages[0].image.size == (10, 10) and pages[2].image.size == (12, 12)
    assert pages[1].image is None and "mixed.tif, page 2: image of 100x100" in str(pages[1].error)
