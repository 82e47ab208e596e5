"""RMSNorm as in DeepSeek-V2 (and T5/LLaMA): x / rms(x) * weight, computed in float32.

Follows the released `modeling_deepseekv2.py` and transformers' `deepseek_ocr2` text model:
normalise in float32, cast back to the input dtype, then scale by the weight.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)
