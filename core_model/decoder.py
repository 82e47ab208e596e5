"""The DeepSeek-V2 MoE decoder both model families share: embeddings, layers, final norm.

A base class: `DeepseekOCRModel` and `DeepseekOCR2Model` add their vision encoders beside
these modules, so the checkpoint names (`model.embed_tokens.*`, `model.layers.N.*`,
`model.norm.*`) sit next to the vision ones under `model.`. The hot path takes tensors only:
`forward(inputs_embeds, positions, ctx)` returns the final hidden states.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.attention import AttentionContext
from core_model.config import DecoderConfig
from core_model.decoder_layer import DecoderLayer
from core_model.rmsnorm import RMSNorm
from core_model.rotary import RotaryEmbedding


def check_supported(cfg: DecoderConfig) -> None:
    """Raise ValueError for decoder settings this implementation does not have."""
    if cfg.scoring_func != "softmax" or cfg.topk_method != "greedy":
        raise ValueError(
            f"unsupported router: scoring_func={cfg.scoring_func!r}, topk_method="
            f"{cfg.topk_method!r}; DeepSeek-OCR uses 'softmax' and 'greedy'"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(
            f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
            f"{cfg.num_attention_heads}"
        )


class DecoderModel(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        check_supported(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        positions: torch.Tensor,
        ctx: AttentionContext | None = None,
    ) -> torch.Tensor:
        """Final hidden states (B, T, hidden) for embeddings (B, T, hidden) at positions (B, T)."""
        cos, sin = self.rotary(positions, inputs_embeds.dtype)  # (B, T, D)
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, ctx)
        return self.norm(x)
