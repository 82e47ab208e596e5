"""Routed (token, expert) pairs laid out by expert, for the MoE backends that multiply each
expert's pairs as one group (`grouped`, `fused` in `core_model/moe.py`).

The P = N*k pairs (pair p: token p // k, its slot p % k) are sorted by expert (stably) and
given rows so that each expert's rows start on a multiple of `block` (its last rows left as
padding). Shapes are static (the worst case: P + E*(block - 1) rows, rounded up to `block`)
and no op syncs with the host, so the layout can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class ExpertRows(NamedTuple):
    order: torch.Tensor  # (P,) the pairs sorted by expert
    row: torch.Tensor  # (P,) the row of each sorted pair
    ends: torch.Tensor  # (E,) one past each expert's last row (a multiple of `block`)
    num_rows: int  # rows in all, a multiple of `block`


def expert_rows(flat_ids: torch.Tensor, num_experts: int, block: int) -> ExpertRows:
    """The layout of pairs whose experts are `flat_ids` (P,)."""
    P, dev = flat_ids.numel(), flat_ids.device
    order = torch.argsort(flat_ids, stable=True)  # (P,)
    expert = flat_ids[order]
    counts = torch.zeros(num_experts, dtype=torch.long, device=dev)
    counts.scatter_add_(0, flat_ids, torch.ones_like(flat_ids))  # (E,) pairs per expert
    padded = (counts + block - 1) // block * block  # (E,) rows per expert
    ends = torch.cumsum(padded, 0)
    rank = torch.arange(P, device=dev) - (torch.cumsum(counts, 0) - counts)[expert]
    row = ends[expert] - padded[expert] + rank
    num_rows = -(-(P + num_experts * (block - 1)) // block) * block
    return ExpertRows(order, row, ends, num_rows)
