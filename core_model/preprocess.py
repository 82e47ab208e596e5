"""Page image -> normalised tensors for the vision encoder, as the released code makes them.

Follows the image side of DeepSeek-OCR's `modeling_deepseekocr.py` (`infer`) and of its vLLM
processor (`process/image_process.py`), reproducing their arithmetic rather than their code:

1. EXIF orientation applied, then RGB. Deliberate difference: pixels with transparency are
   composited on white (the release's bare `convert("RGB")` turns a transparent background
   black), and 16-bit / 32-bit grey images are scaled to 8 bits (the release clips them to
   white). Opaque 8-bit images are untouched, so they match the release exactly.
2. Global view: tiny/small squash the page to a square (`Image.resize`, bicubic); the other
   modes scale it to fit (longer side = view side, the shorter one rounded) and centre it on
   a square of the mean colour (127, 127, 127), exactly like `ImageOps.pad`.
3. Tiles (gundam): pages larger than one 640 tile are resized (bicubic) to the grid of
   min..max tiles whose aspect ratio is closest to the page's, then cut row-major.
4. Pixels: x / 255, then (x - 0.5) / 0.5, float32, channels first.

Every bicubic resize is the release's Pillow arithmetic with its pass order pinned
(`resample.resize_bicubic_pil`: horizontal, then vertical); Pillow 13 runs the vertical pass
first for some sizes, which would change a few pixels. `device_views.py` makes the same views
on a GPU, bit for bit.

Token counts per view follow the vision encoder's layout (see `num_vision_tokens`).
This module knows nothing about the tokenizer or the model weights; steps 1-3 (`prepare_views`)
need no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from core_model.config import DeepseekOCRConfig
from core_model.modes import Mode, get_mode
from core_model.page_image import WHITE, normalize_page_image
from core_model.resample import resize_bicubic_pil

if TYPE_CHECKING:  # torch only where tensors are made: the preparing processes do without it
    import torch

    from core_model.image_input import ImageInput

MEAN_COLOR = (127, 127, 127)  # int(0.5 * 255) per channel, as the release pads


def to_rgb(
    image: Image.Image, *, alpha_background: tuple[int, int, int] | None = WHITE
) -> Image.Image:
    """Apply the EXIF orientation and convert to 8-bit RGB: the one page-image step every
    engine shares (`core_model.page_image.normalize_page_image`).

    Raises:
        ValueError: For an image without pixels or a mode PIL cannot convert to RGB.
    """
    return normalize_page_image(image, alpha_background=alpha_background)


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """Tile grids (columns, rows) with min..max tiles, in the order the release tries them.

    The release collects the grids in a Python set and sorts them by tile count; the set's
    iteration order decides ties within one count, so the set is built in the same order.
    """
    if not 1 <= min_tiles <= max_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {min_tiles}..{max_tiles}")
    grids = set()
    for n in range(min_tiles, max_tiles + 1):
        for cols in range(1, n + 1):
            for rows in range(1, n + 1):
                if min_tiles <= cols * rows <= max_tiles:
                    grids.add((cols, rows))
    return sorted(grids, key=lambda grid: grid[0] * grid[1])


def select_tile_grid(
    width: int, height: int, *, min_tiles: int = 2, max_tiles: int = 6, tile_size: int = 640
) -> tuple[int, int]:
    """The (columns, rows) grid whose aspect ratio is closest to width / height.

    On an exact tie the later grid (more tiles) wins only while the image's area exceeds
    half of that grid's pixel area, so small images are not blown up into many tiles.
    """
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best


def tile_grid_for(
    width: int, height: int, mode: str | Mode, *, min_tiles: int = 2, max_tiles: int = 6
) -> tuple[int, int]:
    """The tile grid `prepare_image` uses for a width x height page; (1, 1) means no tiles."""
    mode = get_mode(mode)
    if not mode.crop or (width <= mode.image_size and height <= mode.image_size):
        return (1, 1)
    return select_tile_grid(
        width, height, min_tiles=min_tiles, max_tiles=max_tiles, tile_size=mode.image_size
    )


def fit_size(width: int, height: int, side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where `fit_and_pad` puts a width x height image on a side x side square: the scaled
    (width, height) and the (x, y) offset, as `ImageOps.pad` computes them (the longer side
    becomes `side`, the shorter one `round(short / long * side)`, offset `round(gap / 2)`)."""
    if width > height:
        size = (side, round(height / width * side))
    elif height > width:
        size = (round(width / height * side), side)
    else:
        size = (side, side)
    offset = (
        (round((side - size[0]) * 0.5), 0)
        if size[0] != side
        else (0, round((side - size[1]) * 0.5))
    )
    return size, offset


def fit_and_pad(image: Image.Image, side: int, color: tuple[int, int, int]) -> Image.Image:
    """Scale `image` to fit a side x side square (bicubic) and centre it on `color`: the
    arithmetic of `ImageOps.pad(image, (side, side), color=color)` (`fit_size`)."""
    size, offset = fit_size(*image.size, side)
    if size == (side, side):
        return resize_bicubic_pil(image, size)
    canvas = Image.new("RGB", (side, side), color)
    if min(size) == 0:  # a sliver that rounds to nothing: only the background remains
        return canvas
    canvas.paste(resize_bicubic_pil(image, size), offset)
    return canvas


# Every uint8 value through x / 255, then (x - 0.5) / 0.5 in float32: the release's
# ToTensor and Normalize, the same IEEE operations in the same order, so the same bits.
_NORMALISED = (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


@dataclass
class Views:
    """A page's views as uint8 arrays, channels first: what `prepare_image` turns into the
    encoder's tensors (`to_image_input`). Made without torch (the preparing processes).

    Attributes:
        global_view: (3, S, S) uint8.
        tiles: (n, 3, T, T) uint8 in row-major order, or None when not tiled.
        tile_grid: (columns, rows); (1, 1) without tiles.
    """

    global_view: np.ndarray
    tiles: np.ndarray | None
    tile_grid: tuple[int, int]


def channels_first(image: Image.Image) -> np.ndarray:
    """RGB image -> (3, H, W) uint8."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def cut_tiles(image: Image.Image, grid: tuple[int, int], side: int) -> np.ndarray:
    """Resize `image` (bicubic) to the grid and cut it into (n, 3, side, side) uint8 tiles,
    row-major."""
    cols, rows = grid
    pixels = np.asarray(resize_bicubic_pil(image, (cols * side, rows * side)), dtype=np.uint8)
    tiles = pixels.reshape(rows, side, cols, side, 3).transpose(0, 2, 4, 1, 3)  # (R, C, 3, T, T)
    return np.ascontiguousarray(tiles).reshape(rows * cols, 3, side, side)


def prepare_views(
    image: Image.Image,
    mode: str | Mode = "gundam",
    *,
    min_tiles: int = 2,
    max_tiles: int = 6,
    alpha_background: tuple[int, int, int] | None = WHITE,
) -> Views:
    """One page image -> its global view and (gundam) its local tiles, as uint8 arrays.
    Arguments as `prepare_image`."""
    mode = get_mode(mode)
    image = to_rgb(image, alpha_background=alpha_background)
    if mode.resize:
        global_view = resize_bicubic_pil(image, (mode.base_size, mode.base_size))
    else:
        global_view = fit_and_pad(image, mode.base_size, MEAN_COLOR)
    grid = tile_grid_for(*image.size, mode, min_tiles=min_tiles, max_tiles=max_tiles)
    tiles = cut_tiles(image, grid, mode.image_size) if grid != (1, 1) else None
    return Views(channels_first(global_view), tiles, grid)


def to_image_input(views: Views, *, normalize: bool = True) -> ImageInput:
    """`views` as the encoder's tensors: float32 in [-1, 1] (x / 255, then (x - 0.5) / 0.5,
    by table lookup), or with `normalize=False` the uint8 values, for `normalize_pixels` to
    finish on the device (a quarter of the bytes to copy, the same values)."""
    import torch

    from core_model.image_input import ImageInput

    def tensor(pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(_NORMALISED[pixels] if normalize else pixels)

    tiles = None if views.tiles is None else tensor(views.tiles)
    return ImageInput(global_view=tensor(views.global_view), tiles=tiles, tile_grid=views.tile_grid)


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [-1, 1] on their device, by the same lookup table as
    `to_image_input` (bit-identical); float pixels are returned as they are."""
    import torch

    if pixels.dtype != torch.uint8:
        return pixels
    table = torch.from_numpy(_NORMALISED).to(pixels.device)
    return table[pixels.long()]


def prepare_image(
    image: Image.Image,
    mode: str | Mode = "gundam",
    *,
    min_tiles: int = 2,
    max_tiles: int = 6,
    alpha_background: tuple[int, int, int] | None = WHITE,
    normalize: bool = True,
) -> ImageInput:
    """Turn one page image into the global view and (gundam) the local tiles.

    Args:
        image: The page, any PIL mode.
        mode: A mode name or `Mode`.
        min_tiles: Fewest tiles of a tiled page (the release uses 2).
        max_tiles: Most tiles of a tiled page (vLLM scripts: 6, Hugging Face `infer`: 9).
        alpha_background: See `to_rgb`.
        normalize: False keeps uint8 pixels; the encoder normalises them on its device.

    Returns:
        The normalised tensors; `tiles` is None and `tile_grid` (1, 1) without tiles.
    """
    views = prepare_views(image, mode, min_tiles=min_tiles, max_tiles=max_tiles,
                          alpha_background=alpha_background)
    return to_image_input(views, normalize=normalize)


def prepare_images(
    images: Iterable[Image.Image],
    mode: str | Mode = "gundam",
    *,
    min_tiles: int = 2,
    max_tiles: int = 6,
    alpha_background: tuple[int, int, int] | None = WHITE,
) -> list[ImageInput]:
    """`prepare_image` for each image, in order."""
    return [
        prepare_image(
            image, mode, min_tiles=min_tiles, max_tiles=max_tiles, alpha_background=alpha_background
        )
        for image in images
    ]


def _queries_per_side(side: int, cfg: DeepseekOCRConfig | None) -> int:
    """Vision tokens along one side of a view: patches, then the 4x compressor (16x area)."""
    cfg = cfg or DeepseekOCRConfig()
    downsample = 2 ** len(cfg.sam.downsample_channels)  # each downsample conv has stride 2
    return math.ceil((side // cfg.sam.patch_size) / downsample)


def count_vision_tokens(
    tile_grid: tuple[int, int], mode: str | Mode, cfg: DeepseekOCRConfig | None = None
) -> int:
    """Image positions in the prompt for a page with this tile grid in this mode.

    Per view, every row of the token grid is followed by one newline position; the tiles
    are stitched into one grid first; one separator position ends the image. Base: 16 x 17
    + 1 = 273; tiny 8 x 9 + 1; small 10 x 11 + 1; large 20 x 21 + 1; a gundam page with a
    (cols, rows) grid adds (10 * cols + 1) * (10 * rows).
    """
    mode = get_mode(mode)
    q_global = _queries_per_side(mode.base_size, cfg)
    total = q_global * (q_global + 1) + 1
    cols, rows = tile_grid
    if (cols, rows) != (1, 1):
        q_tile = _queries_per_side(mode.image_size, cfg)
        total += (q_tile * cols + 1) * (q_tile * rows)
    return total


def num_vision_tokens(
    image_input: ImageInput, mode: str | Mode, cfg: DeepseekOCRConfig | None = None
) -> int:
    """Image positions in the prompt for a prepared page (see `count_vision_tokens`)."""
    return count_vision_tokens(image_input.tile_grid, mode, cfg)
