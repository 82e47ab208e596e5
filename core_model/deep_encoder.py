"""The DeepEncoder: images (global view + tiles) to the decoder's vision-token sequence.

Per view: SAM -> CLIP over SAM's grid -> features = [CLIP tokens without the class token,
flattened SAM grid] (1024 + 1024) -> linear projector -> an h x w grid of decoder embeddings.
Per image, the sequence is laid out as the released `DeepseekOCRModel.forward` does:

    crop mode:  tiles stitched into one (rows*h) x (cols*w) grid, `image_newline` after each
                stitched row; then the global grid, `image_newline` after each row;
                then one `view_seperator`.
    no tiles:   the global grid with a newline after each row, then `view_seperator`.

The number of positions equals the prompt's count of `<image>` ids (`num_vision_tokens`),
which the released tokenizer code computes in the other order (global first); both are all
`<image>` ids, so only the count must agree.

This module does not preprocess pixels (see `ImageInput`) nor touch the decoder.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from core_model.config import DeepseekOCRConfig, SamConfig
from core_model.image_input import ImageInput
from core_model.preprocess import normalize_pixels


def grid_side(image_size: int, cfg: SamConfig) -> int:
    """Vision tokens per side for a square view of `image_size` pixels (1024 -> 16, 640 -> 10).

    Patches per side, then ceil-halved by each stride-2 compressor convolution.
    """
    side = image_size // cfg.patch_size
    for _ in cfg.downsample_channels:
        side = (side - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
    return side


def num_vision_tokens(
    global_size: int,
    tile_size: int,
    tile_grid: tuple[int, int],
    cfg: SamConfig | DeepseekOCRConfig,
) -> int:
    """Positions one image fills in the prompt, newlines and the separator included.

    Args:
        global_size: side of the global view in pixels (512, 640, 1024, 1280).
        tile_size: side of a tile in pixels (640); ignored without tiles.
        tile_grid: (num_width_tiles, num_height_tiles); (1, 1) means no tiles.
        cfg: the SAM configuration (or the whole model configuration).

    Returns:
        g * (g + 1) + [t * cols + 1] * t * rows (when tiled) + 1, with g and t the token
        grid sides of the global view and of a tile. Base (1024, no tiles): 273; Gundam with
        2 x 3 tiles of 640: 273 + 21 * 30 = 903.
    """
    sam = cfg.sam if isinstance(cfg, DeepseekOCRConfig) else cfg
    g = grid_side(global_size, sam)
    count = g * (g + 1) + 1
    cols, rows = tile_grid
    if cols * rows > 1:
        t = grid_side(tile_size, sam)
        count += (t * cols + 1) * (t * rows)
    return count


def encode_views(
    sam: nn.Module, clip: nn.Module, projector: nn.Module, pixels: torch.Tensor
) -> torch.Tensor:
    """Views (B, 3, S, S) of one size -> projected feature grids (B, h, w, hidden)."""
    sam_features = sam(pixels)  # (B, C_sam, h, w)
    B, _, h, w = sam_features.shape
    clip_features = clip(pixels, sam_features)[:, 1:]  # (B, h*w, C_clip), class token dropped
    sam_tokens = sam_features.flatten(2).transpose(1, 2)  # (B, h*w, C_sam)
    features = torch.cat([clip_features, sam_tokens], dim=-1)  # (B, h*w, C_clip + C_sam)
    return projector(features).view(B, h, w, -1)  # (B, h, w, hidden)


def with_newlines(grid: torch.Tensor, image_newline: torch.Tensor) -> torch.Tensor:
    """(h, w, D) grid -> (h * (w + 1), D): each row followed by the newline vector."""
    h, _, D = grid.shape
    newline = image_newline.to(grid.dtype).view(1, 1, D).expand(h, 1, D)  # (h, 1, D)
    return torch.cat([grid, newline], dim=1).view(-1, D)  # (h*(w+1), D)


def stitch_tiles(tiles: torch.Tensor, tile_grid: tuple[int, int]) -> torch.Tensor:
    """Row-major tiles (rows*cols, h, w, D) -> one (rows*h, cols*w, D) grid, as on the page."""
    cols, rows = tile_grid
    _, h, w, D = tiles.shape
    grid = tiles.view(rows, cols, h, w, D).transpose(1, 2)  # (rows, h, cols, w, D)
    return grid.reshape(rows * h, cols * w, D)


def layout_image(
    global_grid: torch.Tensor,
    tile_grids: torch.Tensor | None,
    tile_grid: tuple[int, int],
    image_newline: torch.Tensor,
    view_seperator: torch.Tensor,
) -> torch.Tensor:
    """One image's projected grids -> its vision-token sequence (N, D).

    Args:
        global_grid: (h, w, D) grid of the global view.
        tile_grids: (rows*cols, t, t, D) grids of the tiles in row-major order, or None.
        tile_grid: (num_width_tiles, num_height_tiles).
        image_newline: (D,) learned vector appended after every grid row.
        view_seperator: (D,) learned vector closing the image.
    """
    parts = []
    if tile_grids is not None:
        parts.append(with_newlines(stitch_tiles(tile_grids, tile_grid), image_newline))
    parts.append(with_newlines(global_grid, image_newline))
    parts.append(view_seperator.to(global_grid.dtype).view(1, -1))
    return torch.cat(parts, dim=0)


def encode_images(
    sam: nn.Module,
    clip: nn.Module,
    projector: nn.Module,
    image_newline: torch.Tensor,
    view_seperator: torch.Tensor,
    images: Sequence[ImageInput],
    *,
    max_views_per_call: int | None = None,
    view_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Encode a batch of images into their vision-token sequences.

    All views of one size (global views and tiles alike, whatever image they come from) go
    through SAM and CLIP in one call; pages of different sizes may share a batch.
    Pixels are moved to the encoder's device and dtype; uint8 pixels (`prepare_image(...,
    normalize=False)`) are normalised there.

    Args:
        sam: `SamEncoder` (pixels -> (B, C, h, w)).
        clip: `ClipVisionTower` ((pixels, sam features) -> (B, 1 + h*w, width)).
        projector: `Projector` ((..., C_clip + C_sam) -> (..., hidden)).
        image_newline: (hidden,) learned newline vector.
        view_seperator: (hidden,) learned separator vector.
        images: the images, each a global view and optional tiles.
        max_views_per_call: split a same-size group into calls of at most this many views
            (bounds activation memory); None runs each group in one call.
        view_encoder: runs `encode_views` on the modules for one call (`EncoderGraphs`
            replays small calls); None: `encode_views` itself.

    Returns:
        One (num_vision_tokens, hidden) tensor per image, in input order.
    """
    encoded = encode_by_view_size(
        images, view_encoder or (lambda pixels: encode_views(sam, clip, projector, pixels)),
        next(sam.parameters()), max_views_per_call=max_views_per_call,
    )
    return [
        layout_image(global_grid, tile_grids, image.tile_grid, image_newline, view_seperator)
        for image, (global_grid, tile_grids) in zip(images, encoded, strict=True)
    ]


def encode_by_view_size(
    images: Sequence[ImageInput],
    encode: Callable[[torch.Tensor], torch.Tensor],
    weight: torch.Tensor,
    *,
    max_views_per_call: int | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Run `encode` over every view, all views of one size (global views and tiles, whatever
    image they come from) together, at most `max_views_per_call` views a call.

    Pixels are moved to `weight`'s device and dtype; uint8 pixels (`prepare_image(...,
    normalize=False)`) are normalised there.

    Returns:
        Per image, its encoded global view and its encoded tiles (None without tiles).
    """
    groups: dict[tuple[int, ...], list[torch.Tensor]] = defaultdict(list)
    counts: dict[tuple[int, ...], int] = defaultdict(int)

    def add(pixels: torch.Tensor) -> tuple[tuple[int, ...], int, int]:
        """Queue views (n, 3, S, S) with the others of their size; return where they sit."""
        key = tuple(pixels.shape[1:])
        start = counts[key]
        counts[key] += len(pixels)
        groups[key].append(pixels)
        return key, start, counts[key]

    slots = [
        (add(image.global_view.unsqueeze(0)), None if image.tiles is None else add(image.tiles))
        for image in images
    ]
    out = {}
    for key, chunks in groups.items():
        # Each chunk is copied on its own: pinned page tensors copy asynchronously, a
        # concatenation on the host would not be pinned.
        pixels = torch.cat([c.to(weight.device, non_blocking=True) for c in chunks])  # (B, 3, S, S)
        pixels = normalize_pixels(pixels).to(weight.dtype)  # uint8 views are finished here
        step = max_views_per_call or len(pixels)
        out[key] = torch.cat([encode(part) for part in pixels.split(step)])
    return [
        (out[gkey][gi], None if tiles is None else out[tiles[0]][tiles[1] : tiles[2]])
        for (gkey, gi, _), tiles in slots
    ]
