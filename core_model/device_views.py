"""Page views made on the GPU: `preprocess.prepare_views`, bit for bit, from the page's pixels.

On the CPU, resizing an A4 page rendered at 144 dpi to its views is most of a page's
preparation: ~27 ms of a core for the Base view, ~100 ms for Gundam's tiles (PIL's bicubic
passes), so a host streams pages to the encoder at ~145 pages/s with 8 cores (RESULTS.md,
round 9). Here the page's RGB pixels are copied to the device as they are, and the same
resizes run there (`resample.resize_bicubic`: the release's Pillow arithmetic as two float64
matmuls, exact): ~0.6 ms of an H200 a Base page, ~1.1 ms a Gundam page, and ~0.2 ms of host
time to launch.

Only pages whose upright 8-bit RGB pixels are at hand come here (`rgb_pixels`): a lazy image
that can give them without PIL (a pixel file from the loading processes: `rgb_array`) or a PIL
image that is already upright RGB. Anything that needs orientation or a mode conversion is
prepared on the CPU as before. The caller's thread works on a CUDA stream of its own and waits
for it, so the views are complete when they are handed over.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from PIL import Image

from core_model.image_input import ImageInput
from core_model.modes import Mode
from core_model.page_image import is_upright_and_opaque
from core_model.preprocess import MEAN_COLOR, fit_size, tile_grid_for
from core_model.resample import resize_bicubic

_streams = threading.local()  # each preparing thread's CUDA stream


def rgb_pixels(image: Any) -> np.ndarray | None:
    """The page's pixels as an (H, W, C) uint8 array when they are upright, opaque 8-bit RGB
    (C = 3) or grey (C = 1: RGB with the same value in each channel, as `convert("RGB")`
    makes it), at hand without a conversion; None otherwise (the CPU path prepares the page).

    A lazy image offers them through `rgb_array()` (`loaders.page.PixelFile` reads its file
    in one call, without building a PIL image); a PIL image qualifies by its mode.
    """
    if isinstance(image, Image.Image):
        if (image.mode not in ("RGB", "L") or image.width == 0 or image.height == 0
                or not is_upright_and_opaque(image)):
            return None
        array = np.asarray(image)
        return array if array.ndim == 3 else array[:, :, None]
    read = getattr(image, "rgb_array", None)
    return read() if callable(read) else None


def views_on_device(pixels: torch.Tensor, mode: Mode, *, min_tiles: int = 2,
                    max_tiles: int = 6) -> ImageInput:
    """`prepare_views` on a tensor: (3, H, W) uint8 pixels -> the page's uint8 views, on the
    pixels' device, equal to the CPU's."""
    _, height, width = pixels.shape
    if mode.resize:
        global_view = resize_bicubic(pixels, (mode.base_size, mode.base_size))
    else:
        global_view = fit_and_pad(pixels, mode.base_size)
    grid = tile_grid_for(width, height, mode, min_tiles=min_tiles, max_tiles=max_tiles)
    tiles = cut_tiles(pixels, grid, mode.image_size) if grid != (1, 1) else None
    return ImageInput(global_view=global_view.contiguous(), tiles=tiles, tile_grid=grid)


def fit_and_pad(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """`preprocess.fit_and_pad` on a (3, H, W) uint8 tensor, centred on the mean colour."""
    (w, h), (x, y) = fit_size(pixels.shape[2], pixels.shape[1], side)
    if (w, h) == (side, side):
        return resize_bicubic(pixels, (side, side))
    canvas = torch.empty(3, side, side, dtype=torch.uint8, device=pixels.device)  # (3, S, S)
    for channel, value in enumerate(MEAN_COLOR):  # filled there: no copy from the host
        canvas[channel].fill_(value)
    if min(w, h) > 0:  # a sliver that rounds to nothing: only the background remains
        canvas[:, y:y + h, x:x + w] = resize_bicubic(pixels, (w, h))
    return canvas


def cut_tiles(pixels: torch.Tensor, grid: tuple[int, int], side: int) -> torch.Tensor:
    """`preprocess.cut_tiles` on a (3, H, W) uint8 tensor: (n, 3, side, side), row-major."""
    cols, rows = grid
    resized = resize_bicubic(pixels, (cols * side, rows * side))  # (3, R*T, C*T)
    tiles = resized.reshape(3, rows, side, cols, side).permute(1, 3, 0, 2, 4)  # (R, C, 3, T, T)
    return tiles.reshape(rows * cols, 3, side, side)  # a copy: the tiles stored one by one


def prepare_on_device(image: Any, mode: Mode, device: torch.device) -> ImageInput | None:
    """The page's uint8 views made on `device`, or None when its pixels are not at hand as
    upright RGB (`rgb_pixels`): the caller prepares it on the CPU.

    On CUDA the work goes on this thread's own stream, which it waits for, and the views are
    marked as used by the device's default stream (where the engine encodes them), so their
    memory is not reused before the encoder has read them.
    """
    array = rgb_pixels(image)
    if array is None:
        return None
    if device.type != "cuda":
        return views_on_device(_as_rgb(torch.tensor(array, device=device)), mode)
    if device.index is None:  # "cuda": the current one, so that the thread's stream is kept
        device = torch.device("cuda", torch.cuda.current_device())
    stream = getattr(_streams, "stream", None)
    if stream is None or stream.device != device:
        stream = _streams.stream = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        host = torch.empty(array.shape, dtype=torch.uint8, pin_memory=True)  # (H, W, C)
        np.copyto(host.numpy(), array)  # one copy, into memory the GPU copies from directly
        views = views_on_device(_as_rgb(host.to(device, non_blocking=True)), mode)
    stream.synchronize()
    engine_stream = torch.cuda.default_stream(device)
    for tensor in (views.global_view, views.tiles):
        if tensor is not None:
            tensor.record_stream(engine_stream)
    return views


def _as_rgb(pixels: torch.Tensor) -> torch.Tensor:
    """(H, W, C) uint8 -> (3, H, W): grey (C = 1) repeated in each channel."""
    return pixels.permute(2, 0, 1).expand(3, -1, -1)
