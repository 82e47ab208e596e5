"""Routed experts as Triton kernels that compute only the (token, expert) pairs routed.

Method (the idea of vLLM's `fused_moe`, written anew). N tokens with k experts each make
P = N*k (token, expert) pairs; pair p is token p // k's slot p % k.
1. `align_triton`: the pairs sorted by expert (stably) and laid out in blocks of `block_m`
   rows, each block belonging to one expert; an expert's last block is padded with rows
   holding the sentinel pair P. Shapes are static (at most P + E*(block_m - 1) rows, rounded
   up to `block_m`) and nothing syncs with the host, so the step is CUDA-graph capturable.
   Blocks past the used ones get expert -1 and return at once in the kernels. Two launches
   instead of ~10 small torch ops (`align`, the reference), over chunks of CHUNK pairs:
   `_count_kernel`, one program per chunk, counts the chunk's pairs per expert (a one-hot
   (CHUNK, E) sum); `_place_kernel`, one program per CHUNK rows, sums that table into each
   expert's count and count in earlier chunks, pads the counts to `block_m` and takes their
   exclusive cumsum as each expert's first row, then places its chunk's pairs at
   row = first[e] + earlier[e] + rank within the chunk (a cumsum of the one-hot along the
   chunk, so pairs keep their order), writes P to the padding rows among its CHUNK rows (rows
   no expert's [first, first + count) covers) and, for its blocks, the expert whose rows cover
   the block's first row (-1 past the last one). Each row is written by one program only.
2. `_gate_up_act`: one program per (block, tile of I columns) gathers its block's token rows
   of x, multiplies by the tile's gate rows [n, n+BN) and up rows [I+n, I+n+BN) of
   w_gate_up[e] in two float32 accumulators over one K loop, and writes
   act = silu(gate) * up (I columns per row) in the activation dtype.
3. `_down`: one program per (block, tile of H columns): act rows @ w_down[e].T, rounded to the
   activation dtype and stored at the row's pair (the release rounds each expert's output).
4. Combine in torch: out[t] = sum_j float32(y[t*k + j]) * weight[t, j], rounded once.
Each expert's weights are read once per block of its pairs, not once per token.

The rounding of the loop backend (`core_model/moe.py`) is mirrored in the kernel: gate and up
are rounded to the activation dtype, then silu(gate), then the product.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from core_model.expert_rows import expert_rows

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: moe.py's other backends run
    triton = None

BLOCK_N = 64  # output columns per program
BLOCK_K = 64  # reduction step
CHUNK = 128  # pairs (and rows) per alignment program
TABLE = 64  # chunk counts summed per step of `_place_kernel`


class Alignment(NamedTuple):
    """Pairs laid out in expert blocks (see `align`)."""

    pair_of_row: torch.Tensor  # (R,) int32: the pair in each row, P for a padding row
    expert_of_block: torch.Tensor  # (R // block_m,) int32: the block's expert, -1 if unused
    block_m: int


def block_m_for(pairs: int, num_experts: int) -> int:
    """Rows per block: 16 (tl.dot's least) while experts get a dozen pairs or fewer, larger
    as they fill up, so an expert's weights are read by one or two blocks (measured on an
    H200, full-size layer: 256 tokens 0.214 ms with 32 rows against 0.233 with 16; 512
    tokens 0.234 with 64 against 0.264 with 32)."""
    per_expert = pairs / num_experts
    return 16 if per_expert <= 12 else 32 if per_expert <= 24 else 64


def block_k_for(block_m: int) -> int:
    """Reduction step: 128 for blocks of up to 32 rows, else 64 (H200, full-size layer,
    `benchmarks/tune_moe.py`: 256 tokens in 32-row blocks, down 0.043 ms against 0.048 at
    64; gate-up 0.077 against 0.079)."""
    return 128 if block_m <= 32 else BLOCK_K


def align(ids: torch.Tensor, num_experts: int, block_m: int) -> Alignment:
    """Sort the pairs of `ids` (N, k) by expert into blocks of `block_m` rows (static shapes).

    Plain torch: the reference for `align_triton`, which `fused_moe` uses.
    """
    flat = ids.flatten().long()  # (P,)
    layout = expert_rows(flat, num_experts, block_m)
    pair_of_row = torch.full((layout.num_rows,), flat.numel(), dtype=torch.int32, device=ids.device)
    pair_of_row[layout.row] = layout.order.to(torch.int32)
    block_start = torch.arange(0, layout.num_rows, block_m, device=ids.device)  # (R // block_m,)
    owner = torch.searchsorted(layout.ends, block_start, right=True)  # first expert ending past it
    expert_of_block = torch.where(owner < num_experts, owner, -1).to(torch.int32)
    return Alignment(pair_of_row, expert_of_block, block_m)


def align_triton(ids: torch.Tensor, num_experts: int, block_m: int) -> Alignment:
    """`align` in two Triton launches (see the module docstring): the same tensors."""
    assert block_m & (block_m - 1) == 0, "block_m must be a power of two"
    flat = ids.reshape(-1).contiguous()  # (P,) any integer dtype
    P, dev = flat.numel(), ids.device
    rows = -(-(P + num_experts * (block_m - 1)) // block_m) * block_m
    chunk = max(CHUNK, block_m)  # whole blocks per program
    e_pad = triton.next_power_of_2(num_experts)
    chunks = max(1, triton.cdiv(P, chunk))
    counts = torch.empty(chunks, e_pad, dtype=torch.int32, device=dev)  # (chunks, E_PAD)
    pair_of_row = torch.empty(rows, dtype=torch.int32, device=dev)
    expert_of_block = torch.empty(rows // block_m, dtype=torch.int32, device=dev)
    _count_kernel[(chunks,)](flat, counts, P, num_experts, CHUNK=chunk, E_PAD=e_pad)
    _place_kernel[(triton.cdiv(rows, chunk),)](
        flat, counts, pair_of_row, expert_of_block, P, num_experts, rows, chunks,
        BLOCK_M=block_m, CHUNK=chunk, E_PAD=e_pad, TABLE=TABLE,
    )
    return Alignment(pair_of_row, expert_of_block, block_m)


class Tiles(NamedTuple):
    """A kernel's launch shape: output columns and reduction step per program, warps and
    pipeline stages (`benchmarks/tune_moe.py` measures them)."""

    block_n: int = BLOCK_N
    block_k: int | None = None  # None: `block_k_for(block_m)`
    num_warps: int = 4
    num_stages: int = 3


def fused_moe(
    x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor,
    weights: torch.Tensor, ids: torch.Tensor, block_m: int | None = None,
    tiles: tuple[Tiles, Tiles] | None = None,
) -> torch.Tensor:
    """sum_j weights[t, j] * expert_{ids[t, j]}(x[t]) for each token t, on the routed pairs only.

    Args:
        x: (N, H) activations.
        w_gate_up: (E, 2I, H), gate rows then up rows (`MoE.pack()`).
        w_down: (E, H, I).
        weights: (N, k) float32 routing weights.
        ids: (N, k) expert ids, distinct within a row.
        block_m: rows per block (16, 32 or 64); by default `block_m_for` the batch.
        tiles: the launch shapes of the gate-up and the down kernel (default: `Tiles()`).

    Returns:
        (N, H) in x's dtype: each pair's output rounded to x's dtype, combined in float32.
    """
    if triton is None:
        raise RuntimeError("the fused MoE kernels need Triton (pip install triton)")
    N, k = ids.shape
    E, H = w_gate_up.shape[0], x.shape[1]
    a = align_triton(ids, E, block_m or block_m_for(N * k, E))
    gate_up_tiles, down_tiles = tiles or (Tiles(), Tiles())
    act = torch.empty(a.pair_of_row.numel(), w_down.shape[2], device=x.device, dtype=x.dtype)
    _gate_up_act(x, w_gate_up, a, k, act, gate_up_tiles)
    y = torch.empty(N * k, H, device=x.device, dtype=x.dtype)
    _down(act, w_down, a, y, down_tiles)
    return (y.view(N, k, H).float() * weights[..., None]).sum(dim=1).to(x.dtype)


def _gate_up_act(x, w_gate_up, a: Alignment, k: int, act: torch.Tensor, t: Tiles = Tiles()) -> None:
    """act (R, I) = silu(x[token] @ gate.T) * (x[token] @ up.T) for the rows of used blocks."""
    inter = act.shape[1]
    grid = (a.expert_of_block.numel(), triton.cdiv(inter, t.block_n))
    _gate_up_act_kernel[grid](
        x, w_gate_up, act, a.pair_of_row, a.expert_of_block, k, x.shape[0] * k, inter, x.shape[1],
        x.stride(0), x.stride(1), w_gate_up.stride(0), w_gate_up.stride(1), w_gate_up.stride(2),
        act.stride(0), BLOCK_M=a.block_m, BLOCK_N=t.block_n,
        BLOCK_K=t.block_k or block_k_for(a.block_m), num_warps=t.num_warps, num_stages=t.num_stages,
    )


def _down(act, w_down, a: Alignment, y: torch.Tensor, t: Tiles = Tiles()) -> None:
    """y[pair] (P, H) = act[row] @ w_down[e].T for the real rows of used blocks."""
    hidden, inter = w_down.shape[1], w_down.shape[2]
    grid = (a.expert_of_block.numel(), triton.cdiv(hidden, t.block_n))
    _down_kernel[grid](
        act, w_down, y, a.pair_of_row, a.expert_of_block, y.shape[0], hidden, inter,
        act.stride(0), w_down.stride(0), w_down.stride(1), w_down.stride(2), y.stride(0),
        BLOCK_M=a.block_m, BLOCK_N=t.block_n, BLOCK_K=t.block_k or block_k_for(a.block_m),
        num_warps=t.num_warps, num_stages=t.num_stages,
    )


if triton is not None:

    @triton.jit
    def _count_kernel(Ids, Counts, num_pairs, num_experts,
                      CHUNK: tl.constexpr, E_PAD: tl.constexpr):
        """Counts[c, e] = pairs of chunk c routed to expert e."""
        chunk = tl.program_id(0)
        pairs = chunk * CHUNK + tl.arange(0, CHUNK)  # (CHUNK,)
        expert = tl.load(Ids + pairs, mask=pairs < num_pairs, other=-1).to(tl.int32)
        experts = tl.arange(0, E_PAD)  # (E_PAD,)
        hit = (expert[:, None] == experts[None, :]) & (experts < num_experts)[None, :]
        tl.store(Counts + chunk * E_PAD + experts, tl.sum(hit.to(tl.int32), axis=0))

    @triton.jit
    def _place_kernel(
        Ids, Counts, PairOfRow, ExpertOfBlock, num_pairs, num_experts, num_rows, num_chunks,
        BLOCK_M: tl.constexpr, CHUNK: tl.constexpr, E_PAD: tl.constexpr, TABLE: tl.constexpr,
    ):
        """Program i: the pairs of chunk i to their rows, then rows [i*CHUNK, (i+1)*CHUNK):
        P into the padding ones, and the experts of the blocks among them."""
        me = tl.program_id(0)
        experts = tl.arange(0, E_PAD)  # (E_PAD,)
        real_expert = experts < num_experts
        total = tl.zeros((E_PAD,), dtype=tl.int32)  # pairs per expert
        earlier = tl.zeros((E_PAD,), dtype=tl.int32)  # of them, in chunks before chunk `me`
        for c0 in range(0, num_chunks, TABLE):
            cs = c0 + tl.arange(0, TABLE)  # (TABLE,)
            table = tl.load(Counts + cs[:, None] * E_PAD + experts[None, :],
                            mask=(cs < num_chunks)[:, None], other=0)  # (TABLE, E_PAD)
            total += tl.sum(table, axis=0)
            earlier += tl.sum(tl.where((cs < me)[:, None], table, 0), axis=0)
        padded = (total + BLOCK_M - 1) // BLOCK_M * BLOCK_M  # rows per expert
        end = tl.cumsum(padded, axis=0)
        first = end - padded  # each expert's first row

        # This chunk's pairs: row = first + earlier + rank among the chunk's pairs of e.
        pairs = me * CHUNK + tl.arange(0, CHUNK)  # (CHUNK,)
        expert = tl.load(Ids + pairs, mask=pairs < num_pairs, other=-1).to(tl.int32)
        hit = (expert[:, None] == experts[None, :]) & real_expert[None, :]  # (CHUNK, E_PAD)
        rank = tl.cumsum(hit.to(tl.int32), axis=0) - 1  # (CHUNK, E_PAD), stable
        row = tl.sum(tl.where(hit, rank + (first + earlier)[None, :], 0), axis=1)  # (CHUNK,)
        placed = tl.max(hit.to(tl.int32), axis=1) > 0  # a real pair of a real expert
        tl.store(PairOfRow + row, pairs, mask=placed)

        # Rows [me*CHUNK, (me+1)*CHUNK): those no expert's pairs fill are padding.
        rows = me * CHUNK + tl.arange(0, CHUNK)  # (CHUNK,)
        filled = (rows[:, None] >= first[None, :]) & (rows[:, None] < (first + total)[None, :])
        pad = tl.max(filled.to(tl.int32), axis=1) == 0
        tl.store(PairOfRow + rows, tl.zeros((CHUNK,), dtype=tl.int32) + num_pairs,
                 mask=pad & (rows < num_rows))

        # Their blocks: the first expert whose rows end past the block's first row, else -1.
        blocks = me * (CHUNK // BLOCK_M) + tl.arange(0, CHUNK // BLOCK_M)  # (CHUNK // BM,)
        before = (end[None, :] <= (blocks * BLOCK_M)[:, None]) & real_expert[None, :]
        owner = tl.sum(before.to(tl.int32), axis=1)
        tl.store(ExpertOfBlock + blocks, tl.where(owner < num_experts, owner, -1),
                 mask=blocks < num_rows // BLOCK_M)

    @triton.jit
    def _gate_up_act_kernel(
        X, W, Act, PairOfRow, ExpertOfBlock, top_k, num_pairs, inter, hidden,
        stride_xm, stride_xk, stride_we, stride_wn, stride_wk, stride_act,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        block = tl.program_id(0)
        expert = tl.load(ExpertOfBlock + block)
        if expert < 0:  # past the used blocks
            return
        rows = block * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
        pair = tl.load(PairOfRow + rows)
        real = pair < num_pairs  # padding rows hold the sentinel num_pairs
        token = (pair // top_k).to(tl.int64)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) of I
        col_ok = cols < inter
        ks = tl.arange(0, BLOCK_K)
        x_ptrs = X + token[:, None] * stride_xm + ks[None, :] * stride_xk  # (BM, BK)
        w = W + expert.to(tl.int64) * stride_we
        gate_ptrs = w + ks[:, None] * stride_wk + cols[None, :] * stride_wn  # (BK, BN)
        up_ptrs = gate_ptrs + inter * stride_wn  # up rows follow the I gate rows
        gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, hidden, BLOCK_K):
            k_ok = ks < hidden - k0
            xt = tl.load(x_ptrs, mask=real[:, None] & k_ok[None, :], other=0.0)
            gt = tl.load(gate_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            ut = tl.load(up_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            gate = tl.dot(xt, gt, gate, input_precision="ieee")
            up = tl.dot(xt, ut, up, input_precision="ieee")
            x_ptrs += BLOCK_K * stride_xk
            gate_ptrs += BLOCK_K * stride_wk
            up_ptrs += BLOCK_K * stride_wk
        # Round as the loop backend does: gate, up, silu(gate), then the product.
        dt = Act.dtype.element_ty
        g = gate.to(dt).to(tl.float32)
        silu = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
        out = (silu * up.to(dt).to(tl.float32)).to(dt)
        act_ptrs = Act + rows.to(tl.int64)[:, None] * stride_act + cols[None, :]
        tl.store(act_ptrs, out, mask=col_ok[None, :])

    @triton.jit
    def _down_kernel(
        Act, W, Y, PairOfRow, ExpertOfBlock, num_pairs, hidden, inter,
        stride_act, stride_we, stride_wn, stride_wk, stride_y,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        block = tl.program_id(0)
        expert = tl.load(ExpertOfBlock + block)
        if expert < 0:
            return
        rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
        pair = tl.load(PairOfRow + rows)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) of H
        col_ok = cols < hidden
        ks = tl.arange(0, BLOCK_K)
        a_ptrs = Act + rows.to(tl.int64)[:, None] * stride_act + ks[None, :]  # (BM, BK)
        w_ptrs = (W + expert.to(tl.int64) * stride_we
                  + ks[:, None] * stride_wk + cols[None, :] * stride_wn)  # (BK, BN)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, inter, BLOCK_K):
            k_ok = ks < inter - k0
            at = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
            wt = tl.load(w_ptrs, mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            acc = tl.dot(at, wt, acc, input_precision="ieee")
            a_ptrs += BLOCK_K
            w_ptrs += BLOCK_K * stride_wk
        y_ptrs = Y + pair.to(tl.int64)[:, None] * stride_y + cols[None, :]
        tl.store(y_ptrs, acc.to(Y.dtype.element_ty),
                 mask=(pair < num_pairs)[:, None] & col_ok[None, :])
