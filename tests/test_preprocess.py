"""Preprocessing against an independent re-computation of the released algorithm.

Reference: transformers' `deepseek_ocr2` image processor is NOT the same algorithm (768-pixel
tiles, a floor instead of a round for the padding offset, `w * (S / long)` instead of
`short / long * S` for the scaled side), so it cannot be the reference for pixels. The reference
below is the release's description written with the PIL primitives the release itself calls:
`ImageOps.exif_transpose`, `.convert("RGB")`, `ImageOps.pad(color=(127,127,127))`,
`Image.resize` (bicubic default) and `Image.crop` per tile, then ToTensor/Normalize arithmetic.
Its tile-grid choice is also checked against transformers' `get_optimal_tiled_canvas`, which
matches the release except for exact ties between grids with the same tile count (there the
release's set iteration order decides; see `test_grid_tie_follows_release_set_order`).
"""

from __future__ import annotations

import io
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from core_model.config import DeepseekOCRConfig
from core_model.modes import MODES, Mode, get_mode
from core_model.preprocess import (
    candidate_grids,
    count_vision_tokens,
    normalize_pixels,
    num_vision_tokens,
    prepare_image,
    prepare_images,
    select_tile_grid,
    to_rgb,
)

IMAGE_TOKEN_ID = 128815
RELEASE_MODES = {  # name: (base_size, image_size, crop_mode), as the release's README lists them
    "tiny": (512, 512, False),
    "small": (640, 640, False),
    "base": (1024, 1024, False),
    "large": (1280, 1280, False),
    "gundam": (1024, 640, True),
}


# ---------------------------------------------------------------- the reference
def _release_grid(width, height, min_num, max_num, tile=640):
    ratios = set()
    for n in range(min_num, max_num + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if min_num <= i * j <= max_num:
                    ratios.add((i, j))
    best, best_diff = (1, 1), float("inf")
    for i, j in sorted(ratios, key=lambda r: r[0] * r[1]):
        diff = abs(width / height - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * i * j:
            best = (i, j)
    return best


def _normalise(image):
    array = torch.from_numpy(np.array(image))  # (H, W, 3) uint8
    tensor = array.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return tensor.sub(torch.tensor([0.5] * 3)[:, None, None]).div(
        torch.tensor([0.5] * 3)[:, None, None]
    )


_PIL_RESIZE = Image.Image.resize


def _release_pillow_resize(self, size, resample=Image.Resampling.BICUBIC, *args, **kwargs):
    """`Image.resize` as the release's Pillow (<= 12) ran it: the horizontal pass, then the
    vertical one. Pillow 13 may run the vertical pass first, so the same call changes a few
    pixels; two single-axis resizes have no order to choose."""
    if args or kwargs or self.mode != "RGB" or resample != Image.Resampling.BICUBIC:
        return _PIL_RESIZE(self, size, resample, *args, **kwargs)
    wide = _PIL_RESIZE(self, (size[0], self.height), resample)
    return _PIL_RESIZE(wide, tuple(size), resample)


def release_reference(image, mode, min_num=2, max_num=6):
    """(global view, tiles or None, (w_tiles, h_tiles), image token count) as the release makes
    them, with the release's Pillow pass order (`_release_pillow_resize`)."""
    with mock.patch.object(Image.Image, "resize", _release_pillow_resize):
        return _release_reference(image, mode, min_num, max_num)


def _release_reference(image, mode, min_num, max_num):
    base_size, image_size, crop_mode = RELEASE_MODES[mode]
    image = ImageOps.exif_transpose(image).convert("RGB")
    tiles, grid = None, (1, 1)
    if crop_mode:
        if not (image.size[0] <= 640 and image.size[1] <= 640):
            grid = _release_grid(*image.size, min_num, max_num)
            width, height = 640 * grid[0], 640 * grid[1]
            resized = image.resize((width, height))
            crops = [
                resized.crop(
                    (
                        (i % grid[0]) * 640,
                        (i // grid[0]) * 640,
                        (i % grid[0] + 1) * 640,
                        (i // grid[0] + 1) * 640,
                    )
                )
                for i in range(grid[0] * grid[1])
            ]
            tiles = torch.stack([_normalise(c) for c in crops])
        global_view = ImageOps.pad(image, (base_size, base_size), color=(127, 127, 127))
        q, q_base = -(-(image_size // 16) // 4), -(-(base_size // 16) // 4)
        ids = ([IMAGE_TOKEN_ID] * q_base + [IMAGE_TOKEN_ID]) * q_base + [IMAGE_TOKEN_ID]
        if grid != (1, 1):
            ids += ([IMAGE_TOKEN_ID] * (q * grid[0]) + [IMAGE_TOKEN_ID]) * (q * grid[1])
    else:
        if image_size <= 640:
            image = image.resize((image_size, image_size))
        global_view = ImageOps.pad(image, (image_size, image_size), color=(127, 127, 127))
        q = -(-(image_size // 16) // 4)
        ids = ([IMAGE_TOKEN_ID] * q + [IMAGE_TOKEN_ID]) * q + [IMAGE_TOKEN_ID]
    return _normalise(global_view), tiles, grid, len(ids)


def noise(width, height, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array, mode=mode)


def assert_same(ours, width_height_or_image, mode, min_tiles=2, max_tiles=6):
    image = width_height_or_image
    expected_global, expected_tiles, expected_grid, expected_count = release_reference(
        image, mode, min_tiles, max_tiles
    )
    assert ours.tile_grid == expected_grid
    assert torch.equal(ours.global_view, expected_global)
    if expected_tiles is None:
        assert ours.tiles is None
    else:
        assert ours.tiles is not None and torch.equal(ours.tiles, expected_tiles)
    assert num_vision_tokens(ours, mode) == expected_count


# ---------------------------------------------------------------- pixels and counts
SIZES = [
    (1, 1),
    (7, 3),
    (640, 640),
    (641, 640),
    (800, 640),
    (1023, 1024),
    (1654, 2339),
    (3000, 180),
    (4000, 3),
    (2, 2500),
]
RANDOM_SIZES = [(int(w), int(h)) for w, h in np.random.default_rng(7).integers(20, 2600, (2, 2))]


@pytest.mark.parametrize("size", SIZES + RANDOM_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", list(RELEASE_MODES))
def test_matches_release_for_every_mode_and_size(mode, size):
    image = noise(*size, seed=size[0] * 31 + size[1])
    assert_same(prepare_image(image, mode), image, mode)


@pytest.mark.parametrize("size", [(3000, 180), (1300, 1200)])
@pytest.mark.parametrize("tiles", [(2, 9), (1, 4), (3, 3)])
def test_matches_release_with_configured_tile_range(size, tiles):
    image = noise(*size, seed=3)
    ours = prepare_image(image, "gundam", min_tiles=tiles[0], max_tiles=tiles[1])
    assert_same(ours, image, "gundam", *tiles)
    assert tiles[0] <= ours.tiles.shape[0] <= tiles[1]


def test_tile_grid_matches_transformers_search_outside_same_count_ties():
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        get_optimal_tiled_canvas,
    )

    rng = np.random.default_rng(11)
    for width, height in rng.integers(1, 6000, size=(200, 2)):
        for low, high in ((2, 6), (2, 9)):
            expected = get_optimal_tiled_canvas((int(height), int(width)), (640, 640), low, high)
            assert select_tile_grid(
                int(width), int(height), min_tiles=low, max_tiles=high
            ) == tuple(expected)


def test_grid_tie_follows_release_set_order():
    # 2500x1000 (ratio 2.5) is equally far from 4:1 and 2:2, both 4 tiles. The release's set
    # yields (4, 1) before (2, 2), so (2, 2) is met second and wins; transformers says (4, 1).
    assert candidate_grids(4, 4) == [(4, 1), (1, 4), (2, 2)]
    assert select_tile_grid(2500, 1000, min_tiles=4, max_tiles=4) == (2, 2)
    assert select_tile_grid(2500, 1000, min_tiles=4, max_tiles=4) == _release_grid(2500, 1000, 4, 4)


def test_grid_tie_between_counts_prefers_more_tiles_only_for_big_images():
    # Ratio 1.25 is equally far from 2x2 (1.0) and 3x2 (1.5).
    assert select_tile_grid(1000, 800) == (2, 2)  # 800,000 px <= half of 6 tiles' 2,457,600
    assert select_tile_grid(2500, 2000) == (3, 2)  # 5,000,000 px > 1,228,800


def test_known_token_counts():
    assert {name: count_vision_tokens((1, 1), name) for name in MODES} == {
        "tiny": 8 * 9 + 1,
        "small": 10 * 11 + 1,
        "base": 16 * 17 + 1,
        "large": 20 * 21 + 1,
        "gundam": 16 * 17 + 1,
    }
    a4 = prepare_image(noise(1654, 2339), "gundam")  # an A4 page at 200 dpi
    assert a4.tile_grid == (2, 3)
    assert num_vision_tokens(a4, "gundam") == 273 + (10 * 2 + 1) * (10 * 3) == 903
    assert count_vision_tokens((6, 1), "gundam") == 273 + 61 * 10


def test_token_count_follows_config_sizes():
    cfg = DeepseekOCRConfig()
    cfg.sam.patch_size = 32  # half the patches per side -> half the queries per side
    assert count_vision_tokens((1, 1), "base", cfg) == 8 * 9 + 1


def test_shapes_and_value_range():
    out = prepare_image(noise(1654, 2339), "gundam")
    assert out.global_view.shape == (3, 1024, 1024) and out.global_view.dtype == torch.float32
    assert out.tiles.shape == (6, 3, 640, 640)
    assert out.global_view.min() >= -1 and out.global_view.max() <= 1
    # The padding is the mean colour 127 -> (127 / 255 - 0.5) / 0.5, just below zero.
    assert torch.allclose(out.global_view[:, 512, 0], torch.full((3,), 127 / 255 * 2 - 1))


def test_tiles_are_row_major():
    # Left half black, right half white: in a 2x1 grid tile 0 is dark and tile 1 bright.
    image = Image.new("RGB", (1600, 800), "white")
    image.paste((0, 0, 0), (0, 0, 800, 800))
    out = prepare_image(image, "gundam")
    assert out.tile_grid == (2, 1)
    assert out.tiles[0].mean() < -0.9 and out.tiles[1].mean() > 0.9


# ---------------------------------------------------------------- image modes
def _with_exif_orientation(image, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_is_applied(orientation):
    page = _with_exif_orientation(noise(1500, 700), orientation)
    out = prepare_image(page, "gundam")
    assert_same(out, page, "gundam")
    assert out.tile_grid == ((2, 1) if orientation == 3 else (1, 2))  # 6 and 8 stand it upright


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK", "RGBA-opaque", "YCbCr"])
def test_opaque_modes_match_release(mode):
    base = noise(900, 700, seed=5)
    if mode == "RGBA-opaque":
        image = base.convert("RGBA")
    elif mode == "P":
        image = base.convert("P")
    else:
        image = base.convert(mode)
    assert_same(prepare_image(image, "gundam"), image, "gundam")


def test_transparency_is_composited_on_white():
    # Black text on a transparent black background: the release's convert("RGB") sees all black.
    array = np.zeros((700, 900, 4), dtype=np.uint8)
    array[300:400, 100:800, 3] = 255  # an opaque black bar
    image = Image.fromarray(array, mode="RGBA")
    on_white = Image.new("RGB", (900, 700), "white")
    on_white.paste((0, 0, 0), (100, 300, 800, 400))
    ours = prepare_image(image, "gundam")
    expected = prepare_image(on_white, "gundam")
    assert torch.equal(ours.global_view, expected.global_view) and torch.equal(
        ours.tiles, expected.tiles
    )
    # alpha_background=None keeps the release's behaviour exactly.
    assert_same(prepare_image(image, "gundam", alpha_background=None), image, "gundam")


def test_palette_and_grey_transparency_are_composited():
    grey = Image.new("L", (50, 40), 0)
    grey.info["transparency"] = 0
    assert to_rgb(grey).getpixel((3, 3)) == (255, 255, 255)
    palette = Image.new("P", (50, 40), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((3, 3)) == (255, 255, 255)
    la = Image.new("LA", (50, 40), (0, 128))
    assert to_rgb(la).getpixel((3, 3)) == (127, 127, 127)


def test_16_bit_grey_is_scaled_not_clipped():
    eight = noise(900, 700, seed=9, mode="L")
    sixteen = Image.fromarray(np.asarray(eight).astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    ours, from_eight = prepare_image(sixteen, "gundam"), prepare_image(eight, "gundam")
    assert torch.equal(ours.global_view, from_eight.global_view)
    assert torch.equal(ours.tiles, from_eight.tiles)
    assert sixteen.convert("RGB").getpixel((5, 5)) in ((0, 0, 0), (255, 255, 255))  # why we differ


def test_float_grey_in_unit_range_is_scaled():
    image = Image.fromarray(np.full((20, 30), 0.5, dtype=np.float32), mode="F")
    assert to_rgb(image).getpixel((0, 0)) == (128, 128, 128)


# ---------------------------------------------------------------- API and errors
def test_prepare_images_keeps_order():
    pages = [noise(700, 900, seed=1), noise(300, 200, seed=2)]
    outs = prepare_images(pages, "gundam")
    assert [o.tile_grid for o in outs] == [(2, 3), (1, 1)]
    assert torch.equal(outs[1].global_view, prepare_image(pages[1], "gundam").global_view)


def test_mode_objects_and_names():
    assert get_mode("GUNDAM") is get_mode("gundam") is MODES["gundam"]
    custom = Mode("custom", base_size=512, image_size=512, crop=False, resize=False)
    assert prepare_image(noise(100, 50), custom).global_view.shape == (3, 512, 512)
    with pytest.raises(ValueError, match="unknown mode 'huge'.*tiny, small, base, large, gundam"):
        get_mode("huge")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="no pixels"):
        prepare_image(Image.new("RGB", (0, 10)), "base")
    with pytest.raises(TypeError, match="expected a PIL image"):
        prepare_image(np.zeros((10, 10, 3)), "base")
    with pytest.raises(ValueError, match="min_tiles <= max_tiles"):
        prepare_image(noise(2000, 1000), "gundam", min_tiles=5, max_tiles=3)


@pytest.mark.parametrize("mode", ["tiny", "small", "base", "large", "gundam"])
def test_uint8_pixels_normalised_later_are_bit_identical(mode):
    """The engine ships uint8 pixels to the device and normalises them there."""
    rng = np.random.default_rng(7)
    page = Image.fromarray(rng.integers(0, 256, (1100, 800, 3), dtype=np.uint8))
    ref = prepare_image(page, mode)
    raw = prepare_image(page, mode, normalize=False)
    assert raw.global_view.dtype == torch.uint8
    assert torch.equal(normalize_pixels(raw.global_view), ref.global_view)
    assert (raw.tiles is None) == (ref.tiles is None)
    if ref.tiles is not None:
        assert raw.tiles.dtype == torch.uint8
        assert torch.equal(normalize_pixels(raw.tiles), ref.tiles)
    assert raw.tile_grid == ref.tile_grid


def test_the_normalising_table_has_the_release_bits_for_every_value():
    """The table is made without torch (the preparing processes): every uint8 value must give
    the bits of the release's float32 ToTensor and Normalize."""
    from core_model.preprocess import _NORMALISED

    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).to(torch.float32).div(255)
    release = values.sub(0.5).div(0.5).flatten()
    assert torch.equal(torch.from_numpy(_NORMALISED), release)
