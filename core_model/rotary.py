"""Rotary position embedding over the full head dimension (the non-MLA DeepSeek-V2 path).

DeepSeek-OCR's decoder has `use_mla: false` and `qk_rope_head_dim: 0`: the released
`modeling_deepseekv2.py` then uses transformers' LLaMA attention, whose RoPE rotates the two
halves of each head (`rotate_half`, the "NeoX" layout), not DeepSeek-V2's interleaved MLA
layout. transformers' `deepseek_ocr2` text model does the same. The cos/sin tables are built
once in float32 for every position up to `max_position_embeddings` and gathered by position,
so a decode step needs no per-step trigonometry.
"""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Holds the cos/sin tables; `forward(positions)` returns them gathered by position."""

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        freqs = torch.arange(max_positions, dtype=torch.float)[:, None] * inv_freq  # (P, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (P, D)
        self.register_buffer("cos_table", angles.cos(), persistent=False)
        self.register_buffer("sin_table", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Cos and sin for `positions` (any shape), shape positions.shape + (D,), in `dtype`."""
        return self.cos_table[positions].to(dtype), self.sin_table[positions].to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (B, H, T, D) by cos/sin (B, T, D)."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D)
    return x * cos + _rotate_half(x) * sin
