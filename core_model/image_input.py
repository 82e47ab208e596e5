"""One page image, ready for the vision encoder.

Produced by `core_model.preprocess.prepare_image`, consumed by the vision encoder. Pixel
values are normalised to [-1, 1] (mean 0.5, std 0.5), channels first.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ImageInput:
    global_view: Tensor  # (3, S, S)
    tiles: Tensor | None  # (n, 3, T, T), row-major over the tile grid; None without tiles
    tile_grid: tuple[int, int]  # (num_width_tiles, num_height_tiles), (1, 1) when no tiles
