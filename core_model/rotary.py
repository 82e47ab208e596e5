"""Rotary position embedding over the full head dimension (the non-MLA DeepSeek-V2 path).

DeepSeek-OCR's decoder has `use_mla: false` and `qk_rope_head_dim: 0`: the released
`modeling_deepseekv2.py` then uses transformers' LLaMA attention, whose RoPE rotates the two
halves of each head (`rotate_half`, the "NeoX" layout), not DeepSeek-V2's interleaved MLA
layout. transformers' `deepseek_ocr2` text model does the same. The cos/sin tables are built
once in float32 for every position up to `max_position_embeddings` and gathered by position,
so a decode step needs no per-step trigonometry. On CUDA with Triton, in bf16 (the engine's
dtype), `apply_rotary` is one kernel (`_rotary_kernel`) instead of about seven, rounding where
the torch ops do (each product to bf16, then their sum): their bits under Triton's
interpreter; on a GPU, tested to one bf16 step (tests/test_fused_norm_rotary.py).
"""

from __future__ import annotations

import torch
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None


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
    if (x.is_cuda and triton is not None and not torch.is_grad_enabled()
            and x.dtype == cos.dtype == sin.dtype == torch.bfloat16):
        return rotary_triton(x, cos, sin)
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D)
    return x * cos + _rotate_half(x) * sin


def rotary_triton(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rotary` in one Triton launch, for any strides of x (B, H, T, D)."""
    B, H, T, D = x.shape
    out = torch.empty_like(x)
    if cos.stride(-1) != 1:
        cos = cos.contiguous()
    if sin.stride(-1) != 1:
        sin = sin.contiguous()
    if x.numel():
        _rotary_kernel[(B * H * T,)](
            x, cos, sin, out, H, T, *x.stride(), *out.stride(), *cos.stride()[:2], *sin.stride()[:2],
            HALF=D // 2, num_warps=1,
        )
    return out


if triton is not None:

    @triton.jit
    def _to_bf16(x):
        """float32 -> the nearest bf16 value (ties to even), still as float32, by integer ops
        that no compiler pass can drop or fuse with the following sum. (The first version's
        float round trip did not give the torch ops' bits on an H200; the cause was not found.)"""
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _rotary_kernel(X, Cos, Sin, Out, H, T, sxb, sxh, sxt, sxd, sob, soh, sot, sod,
                       scb, sct, ssb, sst, HALF: tl.constexpr):
        """One (b, h, t) row of bf16: out = x * cos + rotate_half(x) * sin, each product
        rounded to bf16, then the sum."""
        pid = tl.program_id(0).to(tl.int64)
        t = pid % T
        h = (pid // T) % H
        b = pid // (T * H)
        i = tl.arange(0, HALF)
        x = X + b * sxb + h * sxh + t * sxt
        lo = tl.load(x + i * sxd).to(tl.float32)
        hi = tl.load(x + (i + HALF) * sxd).to(tl.float32)
        c = Cos + b * scb + t * sct
        s = Sin + b * ssb + t * sst
        c_lo = tl.load(c + i).to(tl.float32)
        c_hi = tl.load(c + i + HALF).to(tl.float32)
        s_lo = tl.load(s + i).to(tl.float32)
        s_hi = tl.load(s + i + HALF).to(tl.float32)
        out_lo = _to_bf16(lo * c_lo) + _to_bf16(-hi * s_lo)
        out_hi = _to_bf16(hi * c_hi) + _to_bf16(lo * s_hi)
        o = Out + b * sob + h * soh + t * sot
        tl.store(o + i * sod, out_lo.to(tl.bfloat16))
        tl.store(o + (i + HALF) * sod, out_hi.to(tl.bfloat16))
