"""Multi-head causal self-attention of the decoder (plain MHA: DeepSeek-OCR does not use MLA).

Three ways to run, chosen by the `AttentionContext` passed down from the model:
- no context: plain causal attention over the given tokens (no cache; parity tests);
- prefill: the (right-padded) prompts of a few sequences, their keys and values written into
  the paged KV cache at `write_blocks`/`write_offsets` (padding goes to a scratch block) and
  attended causally;
- decode: one new token per row, written at its position's block and offset, attending to
  cache positions `<= positions` through the row's `block_tables` entry. On a GPU with Triton
  each row reads only its own length (`decode_attention.py`); elsewhere the row's blocks are
  gathered into a contiguous span and `scaled_dot_product_attention` runs with `decode_mask`.
Prefill and cache-less attention are `scaled_dot_product_attention`. The cache tensors are
attached by the engine (`k_cache`, `v_cache`: (blocks, heads, block_size, head_dim), see
`core_model/engines/kv_cache.py`); the module knows nothing else about the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core_model import decode_attention
from core_model.rotary import apply_rotary


@dataclass
class AttentionContext:
    """Per-forward metadata shared by every layer."""

    is_prefill: bool
    write_blocks: torch.Tensor | None = None  # cache block of each new token: (B, T) / (B,)
    write_offsets: torch.Tensor | None = None  # its offset in the block, same shape
    positions: torch.Tensor | None = None  # decode: (B,) position of the new token
    block_tables: torch.Tensor | None = None  # decode: (B, max blocks) int32, each row's blocks
    decode_mask: torch.Tensor | None = None  # decode: (B, 1, 1, kv_span) bool, True = attend
    kv_span: int = 0  # decode: cache positions [0, kv_span) are read (SDPA)
    use_kernel: bool = False  # decode: per-row lengths through the Triton kernel


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        self.k_cache: torch.Tensor | None = None  # (blocks, Hkv, block_size, D), set by the engine
        self.v_cache: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        ctx: AttentionContext | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        gqa = self.num_kv_heads != self.num_heads

        if ctx is None or ctx.is_prefill:
            if ctx is not None:  # (B, T) blocks and offsets index (B, T, Hkv, D)
                self.k_cache[ctx.write_blocks, :, ctx.write_offsets] = k.transpose(1, 2)
                self.v_cache[ctx.write_blocks, :, ctx.write_offsets] = v.transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            self.k_cache[ctx.write_blocks, :, ctx.write_offsets] = k[:, :, 0]  # (B, Hkv, D)
            self.v_cache[ctx.write_blocks, :, ctx.write_offsets] = v[:, :, 0]
            if ctx.use_kernel:
                out = decode_attention.decode_attention(
                    q[:, :, 0], self.k_cache, self.v_cache, ctx.block_tables, ctx.positions + 1,
                    self.head_dim**-0.5,
                )[:, :, None]  # (B, H, 1, D)
            else:
                keys, values = (gather_span(c, ctx.block_tables, ctx.kv_span)
                                for c in (self.k_cache, self.v_cache))
                out = F.scaled_dot_product_attention(
                    q, keys, values, attn_mask=ctx.decode_mask, enable_gqa=gqa
                )
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)
        return self.o_proj(out)


def gather_span(cache: torch.Tensor, block_tables: torch.Tensor, span: int) -> torch.Tensor:
    """Positions [0, span) of each row's blocks as one contiguous (B, Hkv, span, D) tensor."""
    block_size = cache.shape[2]
    blocks = cache[block_tables[:, : -(-span // block_size)].long()]  # (B, n, Hkv, block, D)
    B, n, H, _, D = blocks.shape
    return blocks.permute(0, 2, 1, 3, 4).reshape(B, H, n * block_size, D)[:, :, :span]
