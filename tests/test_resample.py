"""core_model.resample: the torch bicubic resize gives the release's Pillow bits.

The reference is PIL run as two single-axis resizes, horizontal then vertical (the release's
order; a one-axis resize has no order to choose). One `Image.resize` call of the installed
Pillow is compared only where it also runs horizontal first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from core_model.resample import bicubic_weights, resize_bicubic, resize_bicubic_pil

BICUBIC = Image.Resampling.BICUBIC


def random_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def page_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a white page with black text-like strokes and a few grey ones, so the
    bicubic overshoot at their edges is clipped at 0 and at 255."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 255, dtype=np.uint8)
    line = max(height // 60, 4)
    for top in range(line, height - line, 2 * line):  # text lines of word-like strokes
        left = int(rng.integers(0, max(width // 10, 1)))
        while left < width - 2:
            stroke = int(rng.integers(1, max(line // 2, 2)))
            page[top : top + line, left : left + stroke] = 0 if rng.random() < 0.8 else 128
            page[top + line // 2 : top + line // 2 + stroke, left : left + 3 * stroke] = 0
            left += int(rng.integers(stroke + 1, 4 * stroke + 3))
    return page


def two_step(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The release's arithmetic with PIL: horizontal-only resize, then vertical-only."""
    width, height = size
    out = image
    if width != out.width:
        out = out.resize((width, out.height), BICUBIC)
    if height != out.height:
        out = out.resize((width, height), BICUBIC)
    return np.asarray(out)


def torch_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """resize_bicubic on a (H, W, C) array, back to (h, w, C)."""
    chw = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    return resize_bicubic(chw, size).permute(1, 2, 0).numpy()


FIXED_SIZES = [
    ((1190, 1684), (724, 1024)),  # A4 at 144 dpi -> base global view, ~1.6x down
    ((1190, 1684), (1280, 1920)),  # A4 -> a 2x3 gundam tile grid, up
    ((1000, 1400), (250, 350)),  # strong (4x) downscale
    ((300, 200), (1024, 683)),  # small image, ~3.4x up
    ((800, 600), (512, 600)),  # width only
    ((600, 800), (600, 333)),  # height only
    ((37, 1500), (25, 1024)),  # thin sliver; Pillow 13 does this one vertical first
    ((5, 900), (3, 640)),
    ((1, 50), (3, 20)),  # a single column in
]
RANDOM_SIZES = [
    tuple(tuple(int(v) for v in pair) for pair in pairs)
    for pairs in np.random.default_rng(1234).integers(8, 401, (20, 2, 2))
]


@pytest.mark.parametrize(("src", "size"), FIXED_SIZES + RANDOM_SIZES)
def test_matches_pil_two_step_on_noise(src, size):
    pixels = random_image(*src, seed=src[0] * 7 + size[1])
    assert np.array_equal(torch_resize(pixels, size), two_step(Image.fromarray(pixels), size))


@pytest.mark.parametrize(("src", "size"), [FIXED_SIZES[i] for i in (0, 2, 3, 6, 7)])
def test_matches_pil_two_step_on_a_page(src, size):
    pixels = page_image(*src)
    assert (pixels == 0).any() and (pixels == 255).any()
    expected = two_step(Image.fromarray(pixels), size)
    assert (expected == 0).any() and (expected == 255).any()
    assert np.array_equal(torch_resize(pixels, size), expected)


def test_strong_downscale_of_a_300_dpi_page():
    pixels = page_image(2480, 3508)[:, :, :1]  # one channel keeps the test fast
    grey = Image.fromarray(pixels[:, :, 0])
    assert np.array_equal(torch_resize(pixels, (724, 1024))[:, :, 0], two_step(grey, (724, 1024)))


def test_a_batch_and_any_channel_count():
    pixels = random_image(90, 70, seed=3)
    batch = torch.from_numpy(np.stack([pixels, pixels[::-1].copy()])).permute(0, 3, 1, 2)
    out = resize_bicubic(batch, (41, 103))  # (2, 3, 103, 41)
    for image, got in zip((pixels, pixels[::-1].copy()), out):
        assert np.array_equal(
            got.permute(1, 2, 0).numpy(), two_step(Image.fromarray(image), (41, 103))
        )
    grey = pixels[:, :, 0]
    got = resize_bicubic(torch.from_numpy(grey)[None], (41, 103))[0].numpy()
    assert np.array_equal(got, two_step(Image.fromarray(grey), (41, 103)))


def test_horizontal_pass_comes_first():
    """37x1500 -> 25x1024: the two orders give different pixels; ours is horizontal first."""
    pixels = random_image(37, 1500, seed=5)
    image = Image.fromarray(pixels)
    vertical_first = np.asarray(image.resize((37, 1024), BICUBIC).resize((25, 1024), BICUBIC))
    expected = two_step(image, (25, 1024))
    assert not np.array_equal(expected, vertical_first)
    got = torch_resize(pixels, (25, 1024))
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, vertical_first)
    assert np.array_equal(np.asarray(resize_bicubic_pil(image, (25, 1024))), expected)


def test_one_pillow_call_runs_one_of_the_two_orders():
    """Whatever order the installed Pillow picks for a size, it is one of the two; ours stays
    horizontal first (Pillow 13 picks vertical first for about half of these sizes)."""
    for src, size in RANDOM_SIZES:
        pixels = random_image(*src, seed=11)
        image = Image.fromarray(pixels)
        one_call = np.asarray(image.resize(size, BICUBIC))
        vertical_first = np.asarray(image.resize((src[0], size[1]), BICUBIC).resize(size, BICUBIC))
        expected = two_step(image, size)
        assert np.array_equal(one_call, expected) or np.array_equal(one_call, vertical_first)
        assert np.array_equal(torch_resize(pixels, size), expected)


@pytest.mark.parametrize(("src", "size"), FIXED_SIZES[:4])
def test_pil_path_is_the_two_step_and_one_resize_where_pillow_goes_horizontal_first(src, size):
    """resize_bicubic_pil is the two-step; for these sizes (A4 page views, a small upscale) the
    installed Pillow also runs horizontal first, so one `Image.resize` call gives the same bits.
    For 37x1500 -> 25x1024 (above) Pillow 13's single call does not."""
    image = Image.fromarray(page_image(*src))
    got = np.asarray(resize_bicubic_pil(image, size))
    assert np.array_equal(got, two_step(image, size))
    assert np.array_equal(got, np.asarray(image.resize(size, BICUBIC)))


def test_unchanged_size_returns_the_same_pixels():
    pixels = random_image(33, 21)
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    assert torch.equal(resize_bicubic(chw, (33, 21)), chw)
    image = Image.fromarray(pixels)
    assert np.array_equal(np.asarray(resize_bicubic_pil(image, (33, 21))), pixels)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        resize_bicubic(torch.zeros(3, 4, 4), (2, 2))  # float
    with pytest.raises(ValueError):
        resize_bicubic(torch.zeros(4, 4, dtype=torch.uint8), (2, 2))  # no channel axis
    with pytest.raises(ValueError):
        resize_bicubic(torch.zeros(3, 4, 4, dtype=torch.uint8), (0, 2))


@pytest.mark.parametrize(
    ("n_in", "n_out"),
    [
        (1684, 1024),
        (1190, 1280),
        (3508, 1024),
        (200, 683),
        (407, 401),
        (300, 100),
        (50, 50),
        (1, 7),
    ],
)
def test_weight_rows(n_in, n_out):
    """Rows sum to 2**22 up to the rounding of each tap (<= 1/2 each), and the non-zeros lie in
    one window of the filter's support, moving right along the rows. (Inside a window a tap can
    be 0: where the filter crosses zero, e.g. 3x down, or rounds to 0, e.g. 407 -> 401.)"""
    weights = bicubic_weights(n_in, n_out)
    assert weights.shape == (n_out, n_in) and not weights.flags.writeable
    assert np.array_equal(weights, np.trunc(weights))
    ksize = math.ceil(2.0 * max(n_in / n_out, 1.0)) * 2 + 1
    assert np.all(np.abs(weights.sum(axis=1) - 2**22) <= ksize / 2)
    first = []
    for row in weights:
        nonzero = np.flatnonzero(row)
        assert 0 < nonzero.size and nonzero[-1] - nonzero[0] < ksize
        first.append(nonzero[0])
    assert np.all(np.diff(first) >= 0)
    assert bicubic_weights(n_in, n_out) is weights  # cached
