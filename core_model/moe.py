"""DeepSeek-V2 mixture of experts: softmax router, greedy top-k, plus always-on shared experts.

As in the released `modeling_deepseekv2.py` (DeepSeek-OCR config: 64 routed experts, top-6,
`norm_topk_prob: false`, `routed_scaling_factor: 1.0`, 2 shared experts): softmax router
scores, the k best experts by score, their outputs weighted by the (not renormalised) scores
and summed, plus the shared-experts MLP.

Precision (`MoE.numerics`). The release runs the model in bf16 under
`torch.autocast("cuda", dtype=torch.bfloat16)`; its `MoEGate` writes the gate in float32
(`F.linear(x.float(), weight.float())`), but autocast runs `linear` in bf16, so the router
logits it actually ranks are bf16. `"release"` (the default) does what that run does: gate
logits in the activation dtype, softmax in float32 (`dtype=torch.float32`), top-k on the
float32 scores, float32 routing weights; each expert's output in the activation dtype, then
`moe_infer`'s combine: expert outputs upcast to float32, weighted, summed over the k experts
in float32 and rounded once to the activation dtype. `"fp32"` computes the gate logits from
float32 copies of the activations and weights (what transformers' `deepseek_ocr2` does by
keeping `gate.weight` in float32), the combine unchanged. In a float32 model both are the
same function; they differ only for bf16/fp16 activations, where near-tied experts can swap.

Parameter names are the checkpoint's (`gate.weight`, `experts.E.{gate,up,down}_proj.weight`,
`shared_experts.*`). After loading, `pack()` stacks the routed experts into two tensors,
`w_gate_up` (E, 2I, H) and `w_down` (E, H, I), and frees the per-expert modules. The routed
part then runs by one of several backends, all computing the same function:
- `loop`: one matmul per expert hit, in expert order (the reference; exact on CPU);
- `gather`: index the weights of each (token, expert) pair and batch-multiply (small batches);
- `dense`: every expert on every token, then each token's k outputs picked out and combined
  (static shapes, CUDA-graph friendly, wasteful only in FLOPs);
- `grouped`: tokens sorted by expert into 16-row-aligned groups and `torch._grouped_mm`
  (Hopper, bf16; static shapes, CUDA-graph capturable);
- `fused`: Triton kernels over the routed (token, expert) pairs sorted into per-expert
  blocks, each hit expert's weights read once per block (`core_model/fused_moe.py`; CUDA and
  Triton; static shapes, CUDA-graph capturable).
`auto` picks: CPU -> loop; on CUDA <= 2 tokens -> gather, <= 8 -> dense, <= 1,024 (decode
batches) -> fused where Triton runs, more -> grouped where `_grouped_mm` runs (Hopper, bf16),
else dense up to 256 and inside a CUDA graph, loop outside.
Every backend rounds each (token, expert) output to the activation dtype and combines in
float32, so they differ from each other only in float32 summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core_model import fused_moe
from core_model.expert_rows import expert_rows
from core_model.mlp import MLP

BACKENDS = ("auto", "loop", "gather", "dense", "grouped", "fused")
NUMERICS = ("release", "fp32")
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
        self.numerics = "release"  # see the module docstring and NUMERICS

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
        """Top-k weights (N, k) float32 and expert ids (N, k) for tokens x (N, H).

        Logits in the activation dtype (`numerics="release"`) or in float32 (`"fp32"`);
        softmax, top-k and the weights in float32 either way.
        """
        if self.numerics == "release":
            logits = F.linear(x, self.gate.weight)  # (N, E), bf16 for a bf16 model
        elif self.numerics == "fp32":
            logits = F.linear(x.float(), self.gate.weight.float())
        else:
            raise ValueError(f"unknown MoE numerics {self.numerics!r}; expected one of {NUMERICS}")
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(scores, self.top_k, dim=-1, sorted=False)  # as the release
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
        # CUDA graph): gather wins at 1 token (dense at 4), the fused Triton kernels from 16
        # tokens on (0.16 ms against dense 0.18 at 16, 0.19 against 0.27 at 128, 0.23
        # against grouped 0.41 at 512; 3 to 8 tokens not measured: dense); without Triton
        # dense up to 256, grouped beyond.
        if self.backend != "auto":
            return self.backend
        if not x.is_cuda or self.w_gate_up is None:
            return "loop"
        tokens = x.shape[0]
        if tokens <= 2:
            return "gather"
        if tokens <= 8:
            return "dense"
        if tokens <= 1024 and fused_moe_available(x):  # decode batches; prefill: grouped
            return "fused"
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
        if backend == "fused":
            return fused_moe.fused_moe(x, self.w_gate_up, self.w_down, weights, ids)
        raise ValueError(f"unknown MoE backend {backend!r}; expected one of {BACKENDS}")

    def _expert_weights(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.w_gate_up is not None:
            return self.w_gate_up[e], self.w_down[e]
        mlp = self.experts[e]
        return torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight)), mlp.down_proj.weight

    def _loop(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
        hit = torch.zeros(self.num_experts, dtype=torch.bool, device=x.device)
        hit[ids.flatten()] = True
        for e in hit.nonzero().flatten().tolist():
            rank, token = torch.where(ids.t() == e)  # (k, N) -> which slot, which token
            w_gate_up, w_down = self._expert_weights(e)
            gate, up = F.linear(x[token], w_gate_up).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, w_down)  # (n, H) in the activation dtype
            out.index_add_(0, token, y.float() * weights[token, rank, None])
        return out.to(x.dtype)

    def _gather(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        N, k = ids.shape
        flat_ids = ids.flatten()  # (N*k,)
        xr = x.repeat_interleave(k, dim=0)[:, :, None]  # (N*k, H, 1)
        gate, up = torch.bmm(self.w_gate_up[flat_ids], xr)[..., 0].chunk(2, dim=-1)  # (N*k, I)
        y = torch.bmm(self.w_down[flat_ids], (F.silu(gate) * up)[:, :, None])[..., 0]  # (N*k, H)
        y = y.view(N, k, -1).float() * weights[..., None]
        return y.sum(dim=1).to(x.dtype)

    def _dense(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = torch.matmul(x[None], self.w_gate_up.transpose(1, 2))  # (E, N, 2I)
        gate, up = h.chunk(2, dim=-1)
        y = torch.bmm(F.silu(gate) * up, self.w_down.transpose(1, 2))  # (E, N, H)
        tokens = torch.arange(x.shape[0], device=x.device)[:, None]  # (N, 1)
        picked = y[ids, tokens]  # (N, k, H): each token's outputs from its k experts
        return (picked.float() * weights[..., None]).sum(dim=1).to(x.dtype)

    def _grouped(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        N, k = ids.shape
        layout = expert_rows(ids.flatten(), self.num_experts, _GROUP_ALIGN)
        xs = torch.zeros(layout.num_rows, x.shape[1], device=x.device, dtype=x.dtype)
        xs[layout.row] = x[layout.order // k]
        offsets = layout.ends.to(torch.int32)
        h = torch._grouped_mm(xs, self.w_gate_up.transpose(1, 2), offs=offsets)  # (rows, 2I)
        gate, up = h.chunk(2, dim=-1)
        y = torch._grouped_mm(F.silu(gate) * up, self.w_down.transpose(1, 2), offs=offsets)
        y = y[layout.row].float() * weights.flatten()[layout.order, None]  # (N*k, H), sorted
        out = torch.zeros(N, x.shape[1], device=x.device, dtype=torch.float32)
        out.index_add_(0, layout.order // k, y)
        return out.to(x.dtype)


def grouped_mm_available(x: torch.Tensor) -> bool:
    """True where `torch._grouped_mm` runs: CUDA, bf16, compute capability 9.x (Hopper)."""
    if not (x.is_cuda and x.dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm")):
        return False
    return torch.cuda.get_device_capability(x.device)[0] == 9


def fused_moe_available(x: torch.Tensor) -> bool:
    """True where the `fused` backend runs: a CUDA tensor and Triton importable."""
    return x.is_cuda and fused_moe.triton is not None
