"""DeepSeek-V2 mixture of experts: softmax router, greedy top-k, plus always-on shared experts.

As in the released `modeling_deepseekv2.py` (DeepSeek-OCR config: 64 routed experts, top-6,
`norm_topk_prob: false`, `routed_scaling_factor: 1.0`, 2 shared experts): router logits and
softmax in float32, the k best experts by score, their outputs weighted by the (not
renormalised) scores and summed, plus the shared-experts MLP.

Parameter names are the checkpoint's (`gate.weight`, `experts.E.{gate,up,down}_proj.weight`,
`shared_experts.*`). After loading, `pack()` stacks the routed experts into two tensors,
`w_gate_up` (E, 2I, H) and `w_down` (E, H, I), and frees the per-expert modules. The routed
part then runs by one of several backends, all computing the same function:
- `loop`: one matmul per expert hit, in expert order (the reference; exact on CPU);
- `gather`: index the weights of each (token, expert) pair and batch-multiply (small batches);
- `dense`: every expert on every token, weighted by a mostly-zero (tokens, E) matrix
  (static shapes, CUDA-graph friendly, wasteful only in FLOPs);
- `grouped`: tokens sorted by expert into 16-row-aligned groups and `torch._grouped_mm`
  (Hopper, bf16; static shapes, CUDA-graph capturable).
`auto` picks: CPU -> loop; on CUDA <= 2 tokens -> gather, <= 256 -> dense, more -> grouped
where `_grouped_mm` runs (Hopper, bf16), else dense inside a CUDA graph and loop outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core_model.mlp import MLP

BACKENDS = ("auto", "loop", "gather", "dense", "grouped")
_GROUP_ALIGN = 16  # rows per group are padded to a multiple of this for _grouped_mm


class MoE(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        moe_intermediate_size: int,
        num_experts: int,
        top_k: int,
        num_shared_experts: int,
        routed_scaling_factor: float = 1.0,
        norm_topk_prob: bool = False,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.top_k = top_k
        self.routed_scaling_factor = routed_scaling_factor
        self.norm_topk_prob = norm_topk_prob
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = nn.ModuleList(
            MLP(hidden_size, moe_intermediate_size) for _ in range(num_experts)
        )
        self.shared_experts = MLP(hidden_size, moe_intermediate_size * num_shared_experts)
        self.w_gate_up: torch.Tensor | None = None  # (E, 2I, H) after pack()
        self.w_down: torch.Tensor | None = None  # (E, H, I) after pack()
        self.backend = "auto"

    @torch.no_grad()
    def pack(self) -> None:
        """Stack the routed experts' weights into two tensors and drop the per-expert modules."""
        if self.w_gate_up is not None:
            return
        gate_up = [torch.cat((e.gate_proj.weight, e.up_proj.weight), dim=0) for e in self.experts]
        self.w_gate_up = torch.stack(gate_up)  # (E, 2I, H)
        self.w_down = torch.stack([e.down_proj.weight for e in self.experts])  # (E, H, I)
        del self.experts

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k weights (N, k) float32 and expert ids (N, k) for tokens x (N, H)."""
        logits = F.linear(x.float(), self.gate.weight.float())  # (N, E)
        scores = logits.softmax(dim=-1)
        weights, ids = torch.topk(scores, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scaling_factor, ids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, H)
        weights, ids = self.route(flat)
        routed = self._routed(flat, weights, ids, self._pick_backend(flat))
        return routed.view(shape) + self.shared_experts(x)

    def _pick_backend(self, x: torch.Tensor) -> str:
        # Crossovers measured on an H200 (benchmarks/RESULTS.md, one full-size layer in a
        # CUDA graph): gather wins at 1 token (dense at 4), dense up to ~256, grouped beyond.
        if self.backend != "auto":
            return self.backend
        if not x.is_cuda or self.w_gate_up is None:
            return "loop"
        tokens = x.shape[0]
        if tokens <= 2:
            return "gather"
        if tokens <= 256:
            return "dense"
        if grouped_mm_available(x):
            return "grouped"
        return "dense" if torch.cuda.is_current_stream_capturing() else "loop"

    def _routed(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, backend: str):
        if backend == "loop":
            return self._loop(x, weights, ids)
        if self.w_gate_up is None:
            raise RuntimeError(f"MoE backend {backend!r} needs pack() first")
        if backend == "gather":
            return self._gather(x, weights, ids)
        if backend == "dense":
            return self._dense(x, weights, ids)
        if backend == "grouped":
            return self._grouped(x, weights, ids)
        raise ValueError(f"unknown MoE backend {backend!r}; expected one of {BACKENDS}")

    def _expert_weights(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.w_gate_up is not None:
            return self.w_gate_up[e], self.w_down[e]
        mlp = self.experts[e]
        return torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight)), mlp.down_proj.weight

    def _loop(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        hit = torch.zeros(self.num_experts, dtype=torch.bool, device=x.device)
        hit[ids.flatten()] = True
        for e in hit.nonzero().flatten().tolist():
            rank, token = torch.where(ids.t() == e)  # (k, N) -> which slot, which token
            w_gate_up, w_down = self._expert_weights(e)
            gate, up = F.linear(x[token], w_gate_up).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, w_down) * weights[token, rank, None]
            out.index_add_(0, token, y.to(out.dtype))
        return out

    def _gather(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        N, k = ids.shape
        flat_ids = ids.flatten()  # (N*k,)
        xr = x.repeat_interleave(k, dim=0)[:, :, None]  # (N*k, H, 1)
        gate, up = torch.bmm(self.w_gate_up[flat_ids], xr)[..., 0].chunk(2, dim=-1)  # (N*k, I)
        y = torch.bmm(self.w_down[flat_ids], (F.silu(gate) * up)[:, :, None])[..., 0]  # (N*k, H)
        y = y.view(N, k, -1) * weights[..., None]
        return y.sum(dim=1).to(x.dtype)

    def _dense(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        E = self.num_experts
        combine = torch.zeros(x.shape[0], E, device=x.device, dtype=torch.float32)
        combine.scatter_(1, ids, weights)  # (N, E), k non-zeros per row
        h = torch.matmul(x[None], self.w_gate_up.transpose(1, 2))  # (E, N, 2I)
        gate, up = h.chunk(2, dim=-1)
        y = torch.bmm(F.silu(gate) * up, self.w_down.transpose(1, 2))  # (E, N, H)
        return torch.einsum("enh,ne->nh", y, combine.to(y.dtype)).to(x.dtype)

    def _grouped(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        N, k = ids.shape
        E = self.num_experts
        flat_ids = ids.flatten()  # (N*k,)
        order = torch.argsort(flat_ids, stable=True)  # pairs sorted by expert
        sorted_ids = flat_ids[order]
        counts = torch.zeros(E, dtype=torch.long, device=x.device)
        counts.scatter_add_(0, flat_ids, torch.ones_like(flat_ids))
        starts = torch.cumsum(counts, 0) - counts
        aligned = (counts + _GROUP_ALIGN - 1) // _GROUP_ALIGN * _GROUP_ALIGN
        aligned_starts = torch.cumsum(aligned, 0) - aligned
        rank = torch.arange(N * k, device=x.device) - starts[sorted_ids]
        dest = aligned_starts[sorted_ids] + rank  # row of each sorted pair in the padded layout
        rows = -(-(N * k + E * (_GROUP_ALIGN - 1)) // _GROUP_ALIGN) * _GROUP_ALIGN
        xs = torch.zeros(rows, x.shape[1], device=x.device, dtype=x.dtype)
        xs[dest] = x[order // k]
        offsets = torch.cumsum(aligned, 0).to(torch.int32)
        h = torch._grouped_mm(xs, self.w_gate_up.transpose(1, 2), offs=offsets)  # (rows, 2I)
        gate, up = h.chunk(2, dim=-1)
        y = torch._grouped_mm(F.silu(gate) * up, self.w_down.transpose(1, 2), offs=offsets)
        y = y[dest] * weights.flatten()[order, None]  # (N*k, H) in sorted order
        out = torch.zeros(N, x.shape[1], device=x.device, dtype=torch.float32)
        out.index_add_(0, order // k, y.float())
        return out.to(x.dtype)


def grouped_mm_available(x: torch.Tensor) -> bool:
    """True where `torch._grouped_mm` runs: CUDA, bf16, compute capability 9.x (Hopper)."""
    if not (x.is_cuda and x.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm")):
        return False
    return torch.cuda.get_device_capability(x.device)[0] == 9
