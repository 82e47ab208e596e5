"""RMSNorm as in DeepSeek-V2 (and T5/LLaMA): x / rms(x) * weight, computed in float32.

Follows the released `modeling_deepseekv2.py` and transformers' `deepseek_ocr2` text model:
normalise in float32, cast back to the input dtype, then scale by the weight. On CUDA with
Triton, in 16-bit activations, the whole norm is one kernel (`_rmsnorm_kernel`, one program a
row) instead of seven (a decode step runs 25 of them on a few hundred rows, where each
kernel's fixed cost is most of its time); it rounds where the torch ops do, but sums the
squares in its own order.
"""

from __future__ import annotations

import torch
from torch import nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.is_cuda and triton is not None and not torch.is_grad_enabled()
                and x.dtype in (torch.bfloat16, torch.float16)):
            return rmsnorm_triton(x, self.weight, self.eps)
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rmsnorm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`RMSNorm.forward` in one Triton launch: x (..., D) -> (..., D) in the dtype the torch
    ops give (x's and the weight's promoted)."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty(rows.shape, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device)
    if rows.shape[0]:
        _rmsnorm_kernel[(rows.shape[0],)](
            rows, weight, out, rows.stride(0), out.stride(0), rows.shape[1], eps,
            BLOCK=triton.next_power_of_2(rows.shape[1]), num_warps=4,
        )
    return out.view(shape)


if triton is not None:

    @triton.jit
    def _rmsnorm_kernel(X, W, Y, stride_x, stride_y, n_cols, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x * x, axis=0) * (1.0 / n_cols)
        normed = (x * tl.math.rsqrt(mean + eps)).to(X.dtype.element_ty).to(tl.float32)  # cast back
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + row * stride_y + cols, (w * normed).to(Y.dtype.element_ty), mask=mask)
