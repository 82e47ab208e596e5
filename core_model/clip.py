"""CLIP ViT-L/14 vision transformer, fed by SAM features.

The second half of the DeepEncoder. It is OpenAI's CLIP vision tower (pre-LayerNorm
`pre_layrnorm`, no post-LayerNorm, quick-GELU, fused qkv projection) with one change: its
patch embeddings are normally the SAM encoder's output grid rather than its own 14x14 patch
convolution. A class token is prepended and the 257 learned position embeddings (class +
16x16 grid) are resized to the SAM grid with antialiased bicubic interpolation.

Follows the released `deepencoder.py` (`VitModel`, `CLIPVisionEmbeddings`, `get_abs_pos`,
`NoTPTransformer`); parameter names equal the checkpoint's under `model.vision_model.`,
including the `position_ids` buffer, which the checkpoint stores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core_model.config import ClipConfig
from core_model.sam import interpolate_grid


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class Embeddings(nn.Module):
    """Class token + patch embeddings + (resized) position embeddings."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.patch_embedding = nn.Conv2d(
            3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(cfg.num_positions, cfg.width)
        self.register_buffer("position_ids", torch.arange(cfg.num_positions).unsqueeze(0))

    def forward(self, pixels: torch.Tensor, patch_embeds: torch.Tensor | None) -> torch.Tensor:
        if patch_embeds is None:
            patch_embeds = self.patch_embedding(pixels)  # (B, width, h, w)
        B, D, h, w = patch_embeds.shape
        if D != self.class_embedding.shape[0]:
            raise ValueError(
                f"patch embeddings have {D} channels; the CLIP width is "
                f"{self.class_embedding.shape[0]} (SAM's last downsample channels must match it)"
            )
        tokens = patch_embeds.flatten(2).transpose(1, 2)  # (B, h*w, width)
        cls = self.class_embedding.to(tokens.dtype).expand(B, 1, D)  # (B, 1, width)
        return torch.cat([cls, tokens], dim=1) + self.positions(h, w)  # (B, 1+h*w, width)

    def positions(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for a class token and an h x w grid: (1, 1 + h*w, width)."""
        table = self.position_embedding(self.position_ids)  # (1, 1+n*n, width)
        cls_pos, grid_pos = table[:, :1], table[:, 1:]
        n = math.isqrt(grid_pos.shape[1])
        grid_pos = grid_pos.reshape(1, n, n, -1).permute(0, 3, 1, 2)  # (1, width, n, n)
        grid_pos = interpolate_grid(grid_pos, (h, w))  # (1, width, h, w)
        grid_pos = grid_pos.flatten(2).transpose(1, 2)  # (1, h*w, width)
        return torch.cat([cls_pos, grid_pos], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (q, k, v stacked in order)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv_proj(x).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, head_dim)
        return self.out_proj(x.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int, mlp_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.self_attn = Attention(cfg.width, cfg.heads)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg.width, cfg.mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ClipVisionTower(nn.Module):
    """CLIP-L over SAM features.

    forward: pixels (B, 3, H, W) and sam_features (B, C, h, w) with C equal to the CLIP width
    -> (B, 1 + h*w, width), class token first. Without `sam_features` the tower embeds
    `pixels` with its own patch convolution (plain CLIP; unused by DeepSeek-OCR).
    """

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.transformer = Transformer(cfg)

    def forward(
        self, pixels: torch.Tensor, sam_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.embeddings(pixels, sam_features)
        return self.transformer(self.pre_layrnorm(x))
