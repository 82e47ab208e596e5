"""DeepEncoder V2's second half: a Qwen2 decoder stack used as an encoder, with learned queries.

DeepSeek-OCR-2 feeds SAM's compressed grid (n tokens of width 896) into Qwen2-0.5B's layers
(24 layers, 14 heads, 2 key/value heads, MLP 4864, RoPE theta 1e6, no token embeddings),
followed by n learned query vectors, one table per view size (`query_768`: 144 for a
768-px view, `query_1024`: 256 for 1024 px). The attention mask mixes two regimes: the image
tokens attend to each other in both directions and never to the queries; each query attends
to every image token and, causally, to the queries before it ("causal flow"). The output is
the final-normed hidden states of the queries, n per view, in order.

Follows the released `deepencoderv2.py` (`Qwen2Decoder2Encoder`, `CustomQwen2Decoder`, built
on transformers' `Qwen2Model`); parameter names equal the checkpoint's under
`model.qwen2_model.` (`model.model.layers.N.*`, `model.model.norm`, `query_768`,
`query_1024`). The attention module is this file's own, so the decoder's KV cache (which binds
every `core_model.attention.Attention`) never sees these layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core_model.config import Qwen2EncoderConfig
from core_model.mlp import MLP
from core_model.rmsnorm import RMSNorm
from core_model.rotary import RotaryEmbedding, apply_rotary


def flow_mask(num_image: int, num_queries: int, device: torch.device | str) -> torch.Tensor:
    """(T, T) bool, True = may attend, over [image tokens, queries] (T = num_image + num_queries).

    Image rows see every image column; query rows see every image column and the queries up
    to and including their own.
    """
    total = num_image + num_queries
    causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
    causal[:num_image, :num_image] = True
    return causal


class EncoderAttention(nn.Module):
    """Grouped-query attention with q/k/v biases and RoPE, under an explicit mask."""

    def __init__(self, cfg: Qwen2EncoderConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.dim, cfg.heads * cfg.head_dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.kv_heads * cfg.head_dim)
        self.o_proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=self.kv_heads != self.heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    """Pre-norm Qwen2 block: x + attn(norm(x)), then h + mlp(norm(h))."""

    def __init__(self, cfg: Qwen2EncoderConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.self_attn = EncoderAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.dim, cfg.mlp_dim)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Qwen2Stack(nn.Module):
    """The layers and final norm (transformers' `Qwen2Model` without `embed_tokens`)."""

    def __init__(self, cfg: Qwen2EncoderConfig, max_positions: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, max_positions, cfg.rope_theta)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)[None]  # (1, T)
        cos, sin = self.rotary(positions, x.dtype)  # (1, T, head_dim)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class _Holder(nn.Module):
    """The release's `CustomQwen2Decoder`, which holds the stack as `.model`."""

    def __init__(self, stack: Qwen2Stack) -> None:
        super().__init__()
        self.model = stack


class Qwen2Encoder(nn.Module):
    """SAM features (B, C, h, w) -> query features (B, h*w, C), C = the Qwen2 width.

    Args:
        cfg: the encoder sizes.
        query_counts: learned queries per view size, e.g. {768: 144, 1024: 256} (one per
            position of SAM's grid for that size).
    """

    def __init__(self, cfg: Qwen2EncoderConfig, query_counts: dict[int, int]) -> None:
        super().__init__()
        longest = max(query_counts.values())
        self.model = _Holder(Qwen2Stack(cfg, max_positions=2 * longest))
        self.query_counts = dict(query_counts)
        for size, count in self.query_counts.items():
            self.add_module(f"query_{size}", nn.Embedding(count, cfg.dim))

    def queries_for(self, num_tokens: int) -> torch.Tensor:
        """The (n, C) learned queries of the view size whose grid has n = `num_tokens` cells.

        Raises:
            ValueError: When no view size has that many (the release supports 768 and 1024 px).
        """
        for size, count in self.query_counts.items():
            if count == num_tokens:
                return getattr(self, f"query_{size}").weight
        sizes = ", ".join(f"{s} px ({c} tokens)" for s, c in self.query_counts.items())
        raise ValueError(
            f"DeepEncoder V2 has learned queries only for views of {sizes}; got a view of "
            f"{num_tokens} tokens"
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = features.flatten(2).transpose(1, 2)  # (B, n, C)
        B, n, _ = tokens.shape
        queries = self.queries_for(n).to(tokens.dtype).expand(B, n, -1)
        mask = flow_mask(n, n, tokens.device)
        hidden = self.model.model(torch.cat([tokens, queries], dim=1), mask)  # (B, 2n, C)
        return hidden[:, n:]
