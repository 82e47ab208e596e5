"""One pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h)).

The MLP is dense for the first `first_k_dense_replace` layers and a mixture of experts after
(`DecoderConfig.is_moe_layer`). Names follow the checkpoint: `input_layernorm`, `self_attn`,
`post_attention_layernorm`, `mlp`.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.attention import Attention, AttentionContext
from core_model.config import DecoderConfig
from core_model.mlp import MLP
from core_model.moe import MoE
from core_model.rmsnorm import RMSNorm


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if cfg.is_moe_layer(index):
            self.mlp: nn.Module = MoE(
                cfg.hidden_size,
                cfg.moe_intermediate_size,
                cfg.n_routed_experts,
                cfg.num_experts_per_tok,
                cfg.n_shared_experts,
                cfg.routed_scaling_factor,
                cfg.norm_topk_prob,
            )
        else:
            self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        ctx: AttentionContext | None = None,
    ) -> torch.Tensor:
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, ctx)
        return h + self.mlp(self.post_attention_layernorm(h))
