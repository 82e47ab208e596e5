"""DeepEncoder V2 (DeepSeek-OCR-2): images (global view + tiles) to vision-token sequences.

Per view: SAM (whose last convolution outputs the Qwen2 width, 896) -> the Qwen2 encoder with
the view size's learned queries -> linear projector 896 -> 1280: one embedding per query, in
query order (a 1024-px view gives 256, a 768-px view 144). Per image, the sequence is laid out
as the released `DeepseekOCR2Model.forward` does:

    tiled:     every tile's queries, tile after tile in row-major order; then the global
               view's queries; then one `view_seperator`.
    no tiles:  the global view's queries, then `view_seperator`.

Unlike DeepSeek-OCR there is no `image_newline` and the tiles are not stitched into one grid.
The prompt's `<image>` count is the same total (`num_vision_tokens`). This module does not
preprocess pixels (see `ImageInput`, `preprocess.prepare_image`) nor touch the decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core_model.config import DeepseekOCR2Config
from core_model.deep_encoder import encode_by_view_size, grid_side
from core_model.image_input import ImageInput


def query_counts(cfg: DeepseekOCR2Config) -> dict[int, int]:
    """Learned queries per supported view size: {768: 144, 1024: 256} at released sizes."""
    return {size: grid_side(size, cfg.sam) ** 2 for size in cfg.encoder.query_sizes}


def num_vision_tokens(
    global_size: int, tile_size: int, tile_grid: tuple[int, int], cfg: DeepseekOCR2Config
) -> int:
    """Positions one image fills in the prompt, the separator included.

    g^2 + t^2 * cols * rows (when tiled) + 1, with g and t the token-grid sides of the global
    view and of a tile: 257 for a 1024-px page without tiles, 257 + 144 n with n 768-px tiles,
    145 for a 768-px view alone.
    """
    count = grid_side(global_size, cfg.sam) ** 2 + 1
    cols, rows = tile_grid
    if cols * rows > 1:
        count += grid_side(tile_size, cfg.sam) ** 2 * cols * rows
    return count


def encode_views(
    sam: nn.Module, encoder: nn.Module, projector: nn.Module, pixels: torch.Tensor
) -> torch.Tensor:
    """Views (B, 3, S, S) of one size -> projected query features (B, n, hidden)."""
    return projector(encoder(sam(pixels)))


def layout_image(
    global_tokens: torch.Tensor, tile_tokens: torch.Tensor | None, view_seperator: torch.Tensor
) -> torch.Tensor:
    """(n, D) global tokens and (tiles, m, D) tile tokens (or None) -> the sequence (N, D)."""
    parts = [] if tile_tokens is None else [tile_tokens.reshape(-1, tile_tokens.shape[-1])]
    parts += [global_tokens, view_seperator.to(global_tokens.dtype).view(1, -1)]
    return torch.cat(parts, dim=0)


def encode_images(
    sam: nn.Module,
    encoder: nn.Module,
    projector: nn.Module,
    view_seperator: torch.Tensor,
    images: Sequence[ImageInput],
    *,
    max_views_per_call: int | None = None,
) -> list[torch.Tensor]:
    """Encode a batch of images into their vision-token sequences.

    All views of one size (global views and tiles alike, whatever image they come from) go
    through SAM and the Qwen2 encoder in one call, at most `max_views_per_call` at a time.
    Pixels are moved to the encoder's device and dtype.

    Returns:
        One (num_vision_tokens, hidden) tensor per image, in input order.

    Raises:
        ValueError: For a view size without learned queries (DeepSeek-OCR-2 takes 768- and
            1024-px views only; e.g. images prepared with DeepSeek-OCR's 640-px tiles).
    """
    encoded = encode_by_view_size(
        images, lambda pixels: encode_views(sam, encoder, projector, pixels),
        next(sam.parameters()), max_views_per_call=max_views_per_call,
    )
    return [layout_image(global_tokens, tile_tokens, view_seperator)
            for global_tokens, tile_tokens in encoded]
