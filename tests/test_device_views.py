"""Page views made on the device (`core_model.device_views`): the same uint8 views as the CPU's
`prepare_views` for every mode and page shape, from a PIL image or a pixel file, only for pages
whose pixels need no conversion, and through the engine the same tokens, with a page whose
pixels are broken failed alone. Run on the CPU here (the arithmetic is exact on any device);
the H200 run in benchmarks/RESULTS.md checks CUDA."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core_model.device_views import prepare_on_device, rgb_pixels, views_on_device
from core_model.image_input import ImageInput
from core_model.modes import get_mode
from core_model.page_image import ORIENTATION
from core_model.preprocess import prepare_views
from loaders.page import PixelFile

CPU = torch.device("cpu")
# The views on every device at hand: the GPU run (benchmarks/RESULTS.md) runs this file there.
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _page(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Text-like strokes on white plus noise: clipping at 0 and 255 and every value in between."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[rng.random((height, width)) < 0.2] = 0
    noisy = rng.random((height, width)) < 0.3
    pixels[noisy] = rng.integers(0, 256, (int(noisy.sum()), 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image.convert(mode) if mode != "RGB" else image


def _on_cpu(views: ImageInput) -> ImageInput:
    tiles = None if views.tiles is None else views.tiles.cpu()
    return ImageInput(global_view=views.global_view.cpu(), tiles=tiles, tile_grid=views.tile_grid)


def _assert_same_views(ours, image, mode):
    expected = prepare_views(image, get_mode(mode))
    assert ours.tile_grid == expected.tile_grid
    assert torch.equal(ours.global_view, torch.from_numpy(expected.global_view))
    if expected.tiles is None:
        assert ours.tiles is None
    else:
        assert ours.tiles is not None and torch.equal(ours.tiles, torch.from_numpy(expected.tiles))


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("mode", ["tiny", "small", "base", "large", "gundam"])
@pytest.mark.parametrize("size", [(600, 850), (900, 420), (500, 500), (300, 200), (1280, 640)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_views_on_the_device_equal_the_cpu_views(mode, size, device):
    """Portrait, landscape, square (no padding), smaller than a tile (no tiles) and exactly a
    tile grid (the tiles need no resize)."""
    image = _page(*size, seed=size[0] + size[1])
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).to(device)  # (3, H, W)
    _assert_same_views(_on_cpu(views_on_device(pixels, get_mode(mode))), image, mode)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("image_mode", ["RGB", "L"])
def test_a_pixel_file_and_an_image_give_the_cpu_views(tmp_path, image_mode, device):
    """Grey pages go as one channel and come out as the RGB the CPU makes of them."""
    image = _page(700, 980, seed=3, mode=image_mode)
    lazy = PixelFile.of(image, str(tmp_path))
    assert lazy is not None and lazy.rgb_array().shape == (980, 700, 1 if image_mode == "L" else 3)
    for source in (lazy, image):
        views = prepare_on_device(source, get_mode("gundam"), device)
        assert views is not None and views.global_view.device.type == device.type
        _assert_same_views(_on_cpu(views), image, "gundam")


def _rotated() -> Image.Image:
    image = _page(40, 60, seed=4)
    exif = image.getexif()
    exif[ORIENTATION] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    return Image.open(buffer)


@pytest.mark.parametrize("make", [
    lambda: _page(40, 60, seed=5, mode="RGBA"),  # transparency: composited on the CPU
    lambda: _page(40, 60, seed=5, mode="P"),
    lambda: _page(40, 60, seed=5, mode="CMYK"),
    _rotated,  # an EXIF orientation: turned upright on the CPU
    lambda: (lambda: _page(40, 60, seed=5)),  # a lazy image without rgb_array
], ids=["RGBA", "P", "CMYK", "exif-rotated", "plain-callable"])
def test_pages_that_need_a_conversion_stay_on_the_cpu(make):
    assert rgb_pixels(make()) is None
    assert prepare_on_device(make(), get_mode("base"), CPU) is None


def test_pixel_files_that_need_a_conversion_stay_on_the_cpu(tmp_path):
    rgba = PixelFile.of(_page(40, 60, seed=6, mode="RGBA"), str(tmp_path))
    assert rgba is not None and rgba.rgb_array() is None
    image = _page(40, 60, seed=6)
    image.info["exif"] = b"Exif\x00\x00"
    assert PixelFile.of(image, str(tmp_path)).rgb_array() is None


def test_a_pixel_file_of_the_wrong_length_names_itself(tmp_path):
    lazy = PixelFile.of(_page(40, 60, seed=7), str(tmp_path))
    with open(lazy.path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match=r"\.pixels: 100 bytes of pixels for a 40x60 RGB page"):
        prepare_on_device(lazy, get_mode("base"), CPU)


def test_the_engine_reads_the_same_tokens_with_views_made_on_the_device(tiny_checkpoint, tmp_path):
    """Through the engine: the same tokens as with the CPU's views, every page counted where it
    was prepared, and a page with broken pixels failed alone with its file's name."""
    from core_model.engines.interface import PageRequest
    from core_model.engines.native import NativeEngine

    images = [_page(300 + 40 * i, 400, seed=10 + i) for i in range(3)]
    pages = [PixelFile.of(image, str(tmp_path)) for image in images]
    broken = PixelFile.of(_page(50, 50, seed=9), str(tmp_path))
    with open(broken.path, "r+b") as f:
        f.truncate(10)
    options = dict(device="cpu", max_new_tokens=8, eager=True, prepare_processes=0)
    results = {}
    for on_device in (True, False):
        engine = NativeEngine.from_pretrained(tiny_checkpoint, resize_on_device=on_device,
                                              **options)
        try:
            requests = [PageRequest(image=page, mode="tiny") for page in [*pages, broken]]
            results[on_device] = engine.generate(requests)
            assert engine.stats.get("prepared_on_device", 0) == (3 if on_device else 0)
        finally:
            engine.close()
    on, off = results[True], results[False]
    assert [r.token_ids for r in on[:3]] == [r.token_ids for r in off[:3]]
    assert all(r.error is None for r in on[:3])
    assert on[3].finish_reason == "error" and broken.path in on[3].error


def test_which_pages_the_engine_resizes_on_its_device(tiny_checkpoint, tmp_path, monkeypatch):
    """By default on CUDA only lazy images that read without the GIL (pixel files); images in
    memory stay on the CPU (measured faster for them on the H200); True and False decide for
    every page; never by default off CUDA."""
    from core_model.engines import native
    from core_model.engines.native import NativeEngine

    engine = NativeEngine.from_pretrained(tiny_checkpoint, device="cpu", eager=True,
                                          prepare_processes=0)
    try:
        image = _page(40, 60, seed=8)
        lazy = PixelFile.of(image, str(tmp_path))
        sent = []
        monkeypatch.setattr(native, "prepare_on_device",
                            lambda page, mode, device: sent.append(page) or "views")
        assert engine._views_on_device(lazy, "base") is None  # default, on the CPU: never
        monkeypatch.setattr(engine.runner, "device", torch.device("cuda"))
        assert engine._views_on_device(image, "base") is None
        assert engine._views_on_device(lazy, "base") == "views"
        engine.config.resize_on_device = True
        assert engine._views_on_device(image, "base") == "views"
        engine.config.resize_on_device = False
        assert engine._views_on_device(lazy, "base") is None
        assert sent == [lazy, image]
    finally:
        monkeypatch.undo()
        engine.close()
