"""A preallocated, static KV cache: one (slots, heads, max_len, head_dim) tensor pair per layer.

A slot holds one sequence for its whole life; the engine gives a finished sequence's slot to
the next waiting one. Nothing is ever reallocated, so decode steps can be captured in CUDA
graphs. `num_slots_for_memory` sizes the cache from the memory the caller can spare.
"""

from __future__ import annotations

import torch
from torch import nn

from core_model.attention import Attention
from core_model.config import DecoderConfig


class KVCache:
    def __init__(
        self,
        cfg: DecoderConfig,
        num_slots: int,
        max_len: int,
        *,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (cfg.num_hidden_layers, num_slots, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.num_slots = num_slots
        self.max_len = max_len
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, S, Hkv, T, D)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    def bind(self, model: nn.Module) -> None:
        """Give each attention module its layer's view of the cache."""
        attentions = [m for m in model.modules() if isinstance(m, Attention)]
        if len(attentions) != self.k.shape[0]:
            raise ValueError(f"cache has {self.k.shape[0]} layers, model {len(attentions)}")
        for layer, attn in enumerate(attentions):
            attn.k_cache, attn.v_cache = self.k[layer], self.v[layer]

    @staticmethod
    def bytes_per_token(cfg: DecoderConfig, dtype: torch.dtype) -> int:
        item = torch.empty((), dtype=dtype).element_size()
        return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * item

    @classmethod
    def num_slots_for_memory(
        cls, cfg: DecoderConfig, max_len: int, budget_bytes: int, dtype: torch.dtype
    ) -> int:
        """How many slots of `max_len` tokens fit in `budget_bytes`."""
        return max(0, budget_bytes // (cls.bytes_per_token(cfg, dtype) * max_len))
