"""SAM ViT-B image encoder with DeepSeek-OCR's 16x token compressor.

The first half of the DeepEncoder: a ViTDet-style ViT (Segment Anything's image encoder) over
16x16 patches, mostly windowed attention (window 14, zero padding to a multiple of the window)
with a few global blocks, decomposed relative position bias (MViTv2) and an absolute position
embedding learned for a 64x64 grid. A convolutional neck (1x1 conv, LayerNorm2d, 3x3 conv,
LayerNorm2d) and two stride-2 3x3 convolutions (`net_2`, `net_3`) follow, so a 1024x1024 image
becomes a 16x16 grid of 1024-wide features.

Follows the released `deepencoder.py` (`ImageEncoderViT`, `Block`, `Attention`,
`get_abs_pos_sam`); parameter names equal the checkpoint's under `model.sam_model.`.
This module knows nothing about CLIP, tiles or tokens: pixels in, feature grid out.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from core_model.config import SamConfig

SAM_LAYER_NORM_EPS = 1e-6


def interpolate_grid(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (B, C, h, w) grid of learned embeddings to `size` as the release does.

    Bicubic with antialiasing (PIL-style cubic, a = -0.5), align_corners=False, computed in
    float32 and cast back. Both SAM's `pos_embed` and CLIP's position embedding use it.
    """
    if tuple(grid.shape[-2:]) == tuple(size):
        return grid
    resized = F.interpolate(
        grid.float(), size=size, mode="bicubic", antialias=True, align_corners=False
    )
    return resized.to(grid.dtype)


def relative_position_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Embeddings for every (query, key) offset along one axis of a `size`-long window.

    Args:
        size: query and key length along the axis (always equal here: self-attention).
        rel_pos: learned table (2 * trained_size - 1, head_dim); linearly resized when the
            axis is not the size it was trained for (global blocks at other resolutions).

    Returns:
        (size, size, head_dim): entry [i, j] embeds the offset i - j.
    """
    num_offsets = 2 * size - 1
    if rel_pos.shape[0] != num_offsets:
        table = rel_pos.float().t().unsqueeze(0)  # (1, head_dim, L)
        table = F.interpolate(table, size=num_offsets, mode="linear")  # (1, head_dim, 2*size-1)
        rel_pos = table.squeeze(0).t().to(rel_pos.dtype)  # (2*size-1, head_dim)
    offsets = torch.arange(size, device=rel_pos.device)
    index = offsets[:, None] - offsets[None, :] + (size - 1)  # (size, size), in [0, 2*size-2]
    return rel_pos[index]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, num_channels: int, eps: float = SAM_LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class PatchEmbed(nn.Module):
    """Non-overlapping patch convolution: (B, 3, H, W) -> (B, H/p, W/p, width)."""

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # The convolution is a matrix product over non-overlapping patches: written as one,
        # it runs as a GEMM rather than a 3-channel implicit convolution (slow in bf16).
        p = self.proj.kernel_size[0]
        B, C, H, W = pixels.shape
        if H % p or W % p:  # as the convolution does: a partial patch at the edge is dropped
            pixels = pixels[:, :, : H - H % p, : W - W % p]
            H, W = H - H % p, W - W % p
        patches = pixels.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
        patches = patches.reshape(B, H // p, W // p, C * p * p)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)  # (B, h, w, width)


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid with decomposed rel-pos bias."""

    def __init__(self, width: int, heads: int, trained_size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * trained_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * trained_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        hd = C // self.heads
        qkv = self.qkv(x).view(B, H * W, 3, self.heads, hd)
        q, k, v = self.with_rel_pos(qkv, H, W)  # each (B, heads, H*W, padded)
        # The relative terms were put in the query as multiples of 1 / scale, so that SDPA
        # scales q.k and leaves them as they were (exact when 1 / scale is a power of two).
        x = F.scaled_dot_product_attention(q, k, v, scale=self._scale(hd))
        x = x[..., :hd].transpose(1, 2).reshape(B, H, W, C)
        return self.proj(x)

    @staticmethod
    def _scale(head_dim: int) -> float:
        """SDPA's scale: 1 / sqrt(d) where that is a power of two (d = 4, 16, 64...; the
        relative terms then pass through exactly), else 1 (the query is scaled itself)."""
        return head_dim**-0.5 if math.log2(head_dim) % 2 == 0 else 1.0

    def with_rel_pos(
        self, qkv: torch.Tensor, H: int, W: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys extended so that q'.k' * s = q.k / sqrt(d) + rel_h[q, kh] + rel_w[q, kw].

        SAM's decomposed relative-position bias (MViTv2), bias[(qh, qw), (kh, kw)] =
        q . Rh[qh - kh] + q . Rw[qw - kw] with the unscaled query, is a dot product in disguise:
        append the query's terms against every row and column (H + W numbers, divided by the
        scale s that SDPA applies) to the query, and one-hot codes of its row and column to
        each key. Attention then needs no (H*W)^2 bias in memory (400 MB a view at 1024 px)
        and runs in a fused kernel. All three are zero-padded to one head size, a multiple
        of 8, as fused kernels want, and written into one buffer: the projection's output is
        copied once, not concatenated and padded piece by piece.

        Args:
            qkv: (B, H*W, 3, heads, head_dim), the projection's output.

        Returns:
            q', k', v': (B, heads, H*W, size) views of one buffer.
        """
        B, N, _, heads, hd = qkv.shape
        size = -(-(hd + H + W) // 8) * 8
        ext = qkv.new_empty(3, B, heads, N, size)
        ext[..., :hd] = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = ext[0], ext[1], ext[2]  # views written in place (not `unbind`'s)
        scale = self._scale(hd)
        Rh = relative_position_table(H, self.rel_pos_h)  # (H, H, head_dim)
        Rw = relative_position_table(W, self.rel_pos_w)  # (W, W, head_dim)
        grid_q = q[..., :hd].reshape(B, heads, H, W, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, Rh)  # (B, heads, H, W, H)
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, Rw)  # (B, heads, H, W, W)
        if scale != 1.0:
            rel_h, rel_w = rel_h / scale, rel_w / scale
        else:
            q[..., :hd] *= hd**-0.5
        q[..., hd : hd + H] = rel_h.reshape(B, heads, N, H)
        q[..., hd + H : hd + H + W] = rel_w.reshape(B, heads, N, W)
        q[..., hd + H + W :] = 0
        k[..., hd:] = _position_codes(H, W, size - hd, k.dtype, k.device)
        v[..., hd:] = 0
        return q, k, v


@functools.lru_cache(maxsize=16)
def _position_codes(H: int, W: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H*W, width): each grid position's one-hot row, then one-hot column, then zeros."""
    rows = torch.eye(H, dtype=dtype, device=device).repeat_interleave(W, dim=0)  # (N, H)
    cols = torch.eye(W, dtype=dtype, device=device).repeat(H, 1)  # (N, W)
    return F.pad(torch.cat([rows, cols], dim=-1), (0, width - H - W))


class MLPBlock(nn.Module):
    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(width, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; attends within windows unless `window_size` is 0."""

    def __init__(self, cfg: SamConfig, window_size: int) -> None:
        super().__init__()
        self.window_size = window_size
        trained_size = window_size or cfg.image_size // cfg.patch_size
        self.norm1 = nn.LayerNorm(cfg.width, eps=SAM_LAYER_NORM_EPS)
        self.attn = Attention(cfg.width, cfg.heads, trained_size)
        self.norm2 = nn.LayerNorm(cfg.width, eps=SAM_LAYER_NORM_EPS)
        self.mlp = MLPBlock(cfg.width, cfg.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.window_size:  # x + the windows' attention, cropped back to the grid
            x = add_windows(x, self.attn(to_windows(h, self.window_size)))
        else:
            x = x + self.attn(h)
        return x + self.mlp(self.norm2(x))


def _window_parts(H: int, W: int, S: int) -> list[tuple[slice, slice, slice, slice, int, int]]:
    """The grid cut into the part of full windows and the partial ones at its bottom and right
    edges: (grid rows, grid columns, window rows, window columns, rows a window, columns a
    window) for each part, windows counted from 0 along each axis."""
    fh, fw, rh, rw = H // S, W // S, H % S, W % S
    rows = [(slice(0, fh * S), slice(0, fh), S)] if fh else []
    rows += [(slice(fh * S, H), slice(fh, fh + 1), rh)] if rh else []
    cols = [(slice(0, fw * S), slice(0, fw), S)] if fw else []
    cols += [(slice(fw * S, W), slice(fw, fw + 1), rw)] if rw else []
    return [(gr, gc, wr, wc, nr, nc) for gr, wr, nr in rows for gc, wc, nc in cols]


def to_windows(x: torch.Tensor, S: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nH * nW, S, S, C): non-overlapping S x S windows, row-major, of the
    grid zero-padded at the bottom and right to a multiple of S (one copy: no padded grid)."""
    B, H, W, C = x.shape
    nH, nW = -(-H // S), -(-W // S)
    windows = x.new_zeros(B, nH, nW, S, S, C)
    grid = windows.permute(0, 1, 3, 2, 4, 5)  # (B, nH, S, nW, S, C): the padded grid
    for gr, gc, wr, wc, nr, nc in _window_parts(H, W, S):
        part = x[:, gr, gc]  # (B, rows, cols, C)
        grid[:, wr, :nr, wc, :nc] = part.reshape(B, -1, nr, part.shape[2] // nc, nc, C)
    return windows.view(B * nH * nW, S, S, C)


def add_windows(x: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """x (B, H, W, C) + the windows of `to_windows(..., S)` put back on the grid, padding
    dropped (in one pass: no padded grid is written)."""
    B, H, W, C = x.shape
    S = windows.shape[1]
    nH, nW = -(-H // S), -(-W // S)
    grid = windows.view(B, nH, nW, S, S, C).permute(0, 1, 3, 2, 4, 5)  # (B, nH, S, nW, S, C)
    if torch.is_grad_enabled() and (x.requires_grad or windows.requires_grad):  # out= has no grad
        return x + grid.reshape(B, nH * S, nW * S, C)[:, :H, :W]
    out = torch.empty_like(x)
    for gr, gc, wr, wc, nr, nc in _window_parts(H, W, S):
        part = x[:, gr, gc]
        shape = (B, -1, nr, part.shape[2] // nc, nc, C)
        torch.add(part.reshape(shape), grid[:, wr, :nr, wc, :nc], out=out[:, gr, gc].view(shape))
    return out


class SamEncoder(nn.Module):
    """SAM ViT-B followed by the neck and the 16x compressor.

    forward: pixels (B, 3, H, W) -> features (B, downsample_channels[-1], H/64, W/64)
    (each stride-2 convolution rounds up: a 40x40 patch grid gives 10x10).
    """

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        if len(cfg.downsample_channels) != 2:
            raise ValueError(
                f"SamConfig.downsample_channels must name two convolutions (net_2, net_3), "
                f"got {cfg.downsample_channels!r}"
            )
        grid = cfg.image_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, cfg.width))
        self.blocks = nn.ModuleList(
            Block(cfg, 0 if i in cfg.global_attn_indexes else cfg.window_size)
            for i in range(cfg.layers)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.width, cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )
        mid, out = cfg.downsample_channels
        self.net_2 = nn.Conv2d(cfg.out_chans, mid, kernel_size=3, stride=2, padding=1, bias=False)
        self.net_3 = nn.Conv2d(mid, out, kernel_size=3, stride=2, padding=1, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)  # (B, h, w, width)
        pos = self.pos_embed.permute(0, 3, 1, 2)  # (1, width, 64, 64)
        pos = interpolate_grid(pos, x.shape[1:3]).permute(0, 2, 3, 1)  # (1, h, w, width)
        x = x + pos
        for block in self.blocks:
            x = block(x)
        x = self.neck(x.permute(0, 3, 1, 2))  # (B, out_chans, h, w)
        return self.net_3(self.net_2(x))  # (B, C_last, ceil(h/4), ceil(w/4))
