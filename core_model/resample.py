"""Pillow's 8-bit BICUBIC resize, bit for bit, in torch (so page views can be resized on a GPU).

Follows Pillow's `src/libImaging/Resample.c` as the DeepSeek-OCR release ran it (Pillow <= 12):
`precompute_coeffs` makes, per output index, normalised double-precision bicubic weights
(a = -0.5) over a window of input indices; `normalize_coeffs_8bpc` turns them into integers
with 22 fractional bits; each pass then sums `pixel * coefficient` in int32, adds 2**21,
shifts right by 22 and clips to 0..255. Two passes, the horizontal one first, each rounding
to uint8.

Here each pass is one float64 matmul against a dense (out, in) matrix holding those integer
coefficients. That is exact: every product and partial sum is an integer below 2**31 (Pillow's
own int32 accumulator does not overflow either), far inside float64's 2**53, so the order in
which a BLAS (CPU or cuBLAS) adds them cannot change the result. The coefficients are computed
with the C code's double-precision steps in the C code's order (including the sequential sum of
the weights), so they are the same integers.

The order of the passes is pinned to the release's horizontal-then-vertical, whatever Pillow is
installed: Pillow 13 runs the vertical pass first for some sizes, which changes a few pixels.
`resize_bicubic_pil` is the same arithmetic done by PIL itself, as two single-axis resizes.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch only for `resize_bicubic`: the preparing processes do without it
    import torch

PRECISION_BITS = 22  # Resample.c: 32 - 8 - 2
_HALF = float(1 << (PRECISION_BITS - 1))
_SCALE_DOWN = 1.0 / (1 << PRECISION_BITS)  # a power of two: multiplying by it is exact


def _bicubic_filter(x: np.ndarray) -> np.ndarray:
    """Resample.c `bicubic_filter` (a = -0.5), elementwise, same operations in the same order."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_weights(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's fixed-point bicubic coefficients for resizing one axis from n_in to n_out.

    Args:
        n_in: Input length (pixels along the axis), >= 1.
        n_out: Output length, >= 1.

    Returns:
        A read-only (n_out, n_in) float64 array of integers: row o holds the coefficients
        (scaled by 2**22) of output pixel o, non-zero only inside its window of input indices
        (a tap inside it can be 0: a zero of the filter, or a weight that rounds to 0).
        Cached per (n_in, n_out).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    scale = n_in / n_out  # C: (double)(in1 - in0) / outSize, in0 = 0, in1 = n_in
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale  # BICUBIC.support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1  # the most taps any output pixel can have
    ss = 1.0 / filterscale
    center = (np.arange(n_out) + 0.5) * scale  # (n_out,)
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # (int) truncates
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), n_in) - xmin
    taps = np.arange(ksize)  # (ksize,)
    valid = taps[None, :] < xmax[:, None]  # (n_out, ksize)
    w = _bicubic_filter(((taps[None, :] + xmin[:, None]) - center[:, None] + 0.5) * ss)
    w = np.where(valid, w, 0.0)  # (n_out, ksize)
    ww = np.zeros(n_out)
    for x in range(ksize):  # C adds the weights one by one; numpy's sum would pair them up
        ww = ww + w[:, x]  # adding the 0.0 of a tap past xmax changes nothing
    w = w / np.where(ww != 0.0, ww, 1.0)[:, None]  # C divides only when ww != 0.0
    fixed = w * (1 << PRECISION_BITS)
    k = np.trunc(np.where(w < 0, -0.5 + fixed, 0.5 + fixed))  # C (int) truncates toward zero
    rows, cols = np.nonzero(valid)
    dense = np.zeros((n_out, n_in))  # (n_out, n_in)
    dense[rows, xmin[rows] + cols] = k[rows, cols]
    dense.flags.writeable = False
    return dense


@functools.lru_cache(maxsize=32)
def _weights_on(n_in: int, n_out: int, device: torch.device, stream: int) -> torch.Tensor:
    """`bicubic_weights` as a float64 tensor on `device`, cached per CUDA stream: each copy is
    made, read and freed in its own stream's order, so no stream reads one that another has
    not finished writing, or one whose memory went back to the allocator."""
    import torch

    return torch.tensor(bicubic_weights(n_in, n_out), dtype=torch.float64, device=device)


def _stream_of(device: torch.device) -> int:
    import torch

    return torch.cuda.current_stream(device).stream_id if device.type == "cuda" else 0


def _round_to_8bit(sums: torch.Tensor) -> torch.Tensor:
    """Resample.c `clip8(2**21 + sum)`: floor((sum + 2**21) / 2**22), clipped; exact in float64."""
    return ((sums + _HALF) * _SCALE_DOWN).floor_().clamp_(0.0, 255.0)


def resize_bicubic(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize like the release's `PIL.Image.resize(size, BICUBIC)` on 8-bit images, bit-exact.

    Horizontal pass first, then vertical, each rounded to 8 bits; a pass whose side does not
    change is skipped, as in Pillow. Runs on the pixels' device.

    Args:
        pixels: (C, H, W) or (N, C, H, W) uint8 tensor, any number of channels, any device.
        size: (width, height) of the result, as PIL takes it.

    Returns:
        (C, h, w) or (N, C, h, w) uint8 tensor on the same device. When size equals (W, H),
        `pixels` itself is returned (no copy).
    """
    import torch

    if pixels.dtype != torch.uint8 or pixels.dim() not in (3, 4):
        raise ValueError(
            f"expected a (C, H, W) or (N, C, H, W) uint8 tensor, got {pixels.dtype} {tuple(pixels.shape)}"
        )
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {size}")
    in_height, in_width = pixels.shape[-2:]
    if (width, height) == (in_width, in_height):
        return pixels
    x = pixels.to(torch.float64)  # (..., H, W)
    if width != in_width:
        kw = _weights_on(in_width, width, pixels.device, _stream_of(pixels.device))  # (w, W)
        x = _round_to_8bit(x @ kw.T)  # (..., H, w)
    if height != in_height:
        kh = _weights_on(in_height, height, pixels.device, _stream_of(pixels.device))  # (h, H)
        x = _round_to_8bit(kh @ x)  # (..., h, w)
    return x.to(torch.uint8)


def resize_bicubic_pil(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The same resize done by PIL on the CPU, in the release's pass order.

    Two single-axis `Image.resize(..., BICUBIC)` calls, horizontal then vertical (a one-axis
    resize has no pass order to choose), so the result does not depend on whether the installed
    Pillow would run the vertical pass first.

    Args:
        image: An 8-bit PIL image (e.g. RGB or L).
        size: (width, height) of the result.

    Returns:
        The resized image; `image` itself (not a copy) when size equals its size.
    """
    width, height = size
    if width != image.width:
        image = image.resize((width, image.height), Image.Resampling.BICUBIC)
    if height != image.height:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return image
