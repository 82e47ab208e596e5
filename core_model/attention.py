"""Multi-head causal self-attention of the decoder (plain MHA: DeepSeek-OCR does not use MLA).

Three ways to run, chosen by the `AttentionContext` passed down from the model:
- no context: plain causal attention over the given tokens (no cache; parity tests);
- prefill: the (right-padded) prompts of a few sequences, written into their KV-cache slots
  (`slot_ids`) and attended causally; padding is never read later, because decode masks
  every cache position at or past a sequence's length;
- decode: one new token for each of the first B cache slots, written at `positions`,
  attending to cache positions `<= positions`. On a GPU with Triton each row reads only its
  own length (`decode_attention.py`); elsewhere `scaled_dot_product_attention` runs over the
  first `kv_span` positions with `decode_mask`.
Prefill and cache-less attention are `scaled_dot_product_attention`. The cache tensors are attached by the
engine (`k_cache`, `v_cache`: (slots, heads, max_len, head_dim)); the module knows nothing
else about the engine.
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
    slot_ids: torch.Tensor | None = None  # prefill: (B,) cache slot of each row
    positions: torch.Tensor | None = None  # decode: (B,) position of the new token
    decode_mask: torch.Tensor | None = None  # decode: (B, 1, 1, kv_span) bool, True = attend
    kv_span: int = 0  # decode: cache positions [0, kv_span) are read
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
        self.k_cache: torch.Tensor | None = None  # (S, Hkv, T_max, D), set by the engine
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
            if ctx is not None:
                self.k_cache[ctx.slot_ids, :, :T] = k
                self.v_cache[ctx.slot_ids, :, :T] = v
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            rows = torch.arange(B, device=x.device)
            self.k_cache[rows, :, ctx.positions] = k[:, :, 0]  # (B, Hkv, D) at each position
            self.v_cache[rows, :, ctx.positions] = v[:, :, 0]
            if ctx.use_kernel:
                out = decode_attention.decode_attention(
                    q[:, :, 0], self.k_cache, self.v_cache, ctx.positions + 1,
                    self.head_dim**-0.5,
                )[:, :, None]  # (B, H, 1, D)
            else:
                keys = self.k_cache[:B, :, : ctx.kv_span]  # (B, Hkv, span, D), a view
                values = self.v_cache[:B, :, : ctx.kv_span]
                out = F.scaled_dot_product_attention(
                    q, keys, values, attn_mask=ctx.decode_mask, enable_gqa=gqa
                )
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # (B, T, H*D)
        return self.o_proj(out)
