"""The SiLU-gated MLP of DeepSeek-V2: down(silu(gate(x)) * up(x)), no biases.

Used as the dense MLP of layer 0, as each routed expert (before packing) and as the shared
experts of the MoE layers (intermediate size `moe_intermediate_size * n_shared_experts`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
