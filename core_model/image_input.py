"""One image's pixels as the DeepEncoder takes them: a global view and optional tiles.

Produced by preprocessing (pad or resize to the global size, cut tiles in crop mode,
normalise), consumed by `core_model.deep_encoder.encode_images`. Tiles are in row-major order
(left to right, then top to bottom), as the released `dynamic_preprocess` cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageInput:
    """Pixels of one image.

    Attributes:
        global_view: (3, S, S) tensor, the whole image padded or resized to S: float in
            [-1, 1], or uint8 that the encoder normalises on its device.
        tiles: (n, 3, T, T) tensor of local tiles (same dtype), or None when not tiled.
        tile_grid: (num_width_tiles, num_height_tiles); n == width * height. (1, 1) when
            there are no tiles.
    """

    global_view: torch.Tensor
    tiles: torch.Tensor | None = None
    tile_grid: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        self.tile_grid = (int(self.tile_grid[0]), int(self.tile_grid[1]))
        view = self.global_view
        if view.ndim != 3 or view.shape[0] != 3:
            raise ValueError(f"global_view must be (3, S, S), got {tuple(view.shape)}")
        num_tiles = self.tile_grid[0] * self.tile_grid[1]
        if self.tiles is None:
            if num_tiles != 1:
                raise ValueError(f"tile_grid is {self.tile_grid} but no tiles were given")
            return
        tiles = self.tiles
        if tiles.ndim != 4 or tiles.shape[1] != 3:
            raise ValueError(f"tiles must be (n, 3, T, T), got {tuple(tiles.shape)}")
        if num_tiles < 2:
            raise ValueError(
                f"tile_grid {self.tile_grid} has a single tile; pass tiles=None instead "
                "(the released model never uses a 1x1 tiling)"
            )
        if tiles.shape[0] != num_tiles:
            raise ValueError(
                f"tile_grid {self.tile_grid} needs {num_tiles} tiles, got {tiles.shape[0]}"
            )

    @property
    def has_tiles(self) -> bool:
        return self.tiles is not None
