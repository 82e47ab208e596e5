"""Decode attention that reads each row's own cache length, not the batch's longest (Triton).

One new query per row attends to positions [0, length) of its KV-cache slot. Padding every
row to the batch's longest span costs nothing on a fixed-length benchmark but a lot on real
pages, whose outputs run from a few dozen to a few thousand tokens: the step then reads up to
three times the keys and values it needs. This is split-K "flash-decoding": a row's positions
are cut into chunks of `SPLIT`; one program per (row, head, chunk) computes an online-softmax
partial (running max `m`, sum `l`, weighted values `acc`) over its chunk, and a second kernel
merges the partials of a row. Chunks past a row's length return at once, so the work follows
the real lengths while the launch shape stays fixed (CUDA-graph capturable for a batch size).

The cache is paged (`core_model/engines/kv_cache.py`): `(blocks, heads, block_size, head_dim)`
per layer, and row b finds position p in block `block_tables[b, p // block_size]`. A chunk of
`BLOCK_N` positions never straddles two blocks (block_size is a multiple of BLOCK_N), so each
iteration looks its block up once. Without Triton or a GPU, `attention.py` keeps its masked
SDPA path. SPLIT, BLOCK_N, NUM_WARPS and NUM_STAGES are read at each call (a benchmark may
try others before the decode graphs are captured).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: attention.py falls back to SDPA with a mask
    triton = None

# The best of ten settings on an H200 (one layer, batch 256, real cache lengths, mean 1,315:
# 0.480 ms, 3.6 TB/s, against 0.524 ms for (512, 64, 4, 3); `benchmarks/profile_engine.py`).
SPLIT = 256  # cache positions per program
BLOCK_N = 32  # positions loaded per iteration
NUM_WARPS = 2
NUM_STAGES = 3


def is_available(device: torch.device) -> bool:
    return triton is not None and device.type == "cuda"


def decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
    lengths: torch.Tensor, scale: float,
) -> torch.Tensor:
    """softmax(q . K[:length] * scale) V[:length] for each row and head.

    Args:
        q: (B, H, D) queries of the new tokens.
        k_cache, v_cache: (blocks, Hkv, block_size, D). H must be a multiple of Hkv
            (grouped queries share a key head).
        block_tables: (B, max_blocks) int32, the cache blocks of each row in position order.
        lengths: (B,) int, positions to attend per row (>= 1, <= max_blocks * block_size).
        scale: the softmax scale (head_dim ** -0.5).

    Returns:
        (B, H, D) in q's dtype.
    """
    B, H, D = q.shape
    block_size = k_cache.shape[2]
    if block_size % BLOCK_N or SPLIT % BLOCK_N:
        raise ValueError(f"block size {block_size} and SPLIT {SPLIT} must be multiples of {BLOCK_N}")
    num_splits = triton.cdiv(block_tables.shape[1] * block_size, SPLIT)
    group = H // k_cache.shape[1]
    m = torch.empty(B, H, num_splits, device=q.device, dtype=torch.float32)
    s = torch.empty_like(m)
    acc = torch.empty(B, H, num_splits, D, device=q.device, dtype=torch.float32)
    _partial[(B, H, num_splits)](
        q, k_cache, v_cache, block_tables, lengths, m, s, acc,
        q.stride(0), q.stride(1), block_tables.stride(0),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        scale, group, D=D, SPLIT=SPLIT, BLOCK_N=BLOCK_N, BLOCK_SIZE=block_size,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    out = torch.empty_like(q)
    _merge[(B, H)](
        m, s, acc, out, lengths, num_splits, out.stride(0), out.stride(1),
        D=D, SPLITS_P2=triton.next_power_of_2(num_splits), SPLIT=SPLIT, num_warps=4,
    )
    return out


if triton is not None:

    @triton.jit
    def _partial(
        Q, K, V, Tables, Lengths, M, S, Acc,
        stride_qb, stride_qh, stride_tb,
        stride_kb, stride_kh, stride_kt,
        stride_vb, stride_vh, stride_vt,
        scale, group,
        D: tl.constexpr, SPLIT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        head = tl.program_id(1)
        split = tl.program_id(2)
        num_splits = tl.num_programs(2)
        length = tl.load(Lengths + row)
        start = split * SPLIT
        end = tl.minimum(start + SPLIT, length)
        out_index = (row * tl.num_programs(1) + head) * num_splits + split
        offs_d = tl.arange(0, D)
        if start >= end:  # past this row's length: an empty partial
            tl.store(M + out_index, float("-inf"))
            tl.store(S + out_index, 0.0)
            tl.store(Acc + out_index * D + offs_d, tl.zeros([D], dtype=tl.float32))
            return
        kv_head = head // group
        q = tl.load(Q + row * stride_qb + head * stride_qh + offs_d).to(tl.float32) * scale
        table = Tables + row * stride_tb
        m_i = float("-inf")
        l_i = 0.0
        acc = tl.zeros([D], dtype=tl.float32)
        for i in range(0, tl.cdiv(end - start, BLOCK_N)):
            first = start + i * BLOCK_N  # BLOCK_N positions inside one block
            block = tl.load(table + first // BLOCK_SIZE).to(tl.int64)  # offsets pass 2**31
            offs_n = first + tl.arange(0, BLOCK_N)
            valid = offs_n < end
            offs_t = (offs_n % BLOCK_SIZE)[:, None]
            k_base = K + block * stride_kb + kv_head * stride_kh
            v_base = V + block * stride_vb + kv_head * stride_vh
            k = tl.load(k_base + offs_t * stride_kt + offs_d[None, :],
                        mask=valid[:, None], other=0.0)  # (BLOCK_N, D)
            scores = tl.sum(k.to(tl.float32) * q[None, :], axis=1)  # (BLOCK_N,)
            scores = tl.where(valid, scores, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(scores - m_new)
            v = tl.load(v_base + offs_t * stride_vt + offs_d[None, :],
                        mask=valid[:, None], other=0.0)
            acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), axis=0)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            m_i = m_new
        tl.store(M + out_index, m_i)
        tl.store(S + out_index, l_i)
        tl.store(Acc + out_index * D + offs_d, acc)

    @triton.jit
    def _merge(
        M, S, Acc, Out, Lengths, num_splits, stride_ob, stride_oh,
        D: tl.constexpr, SPLITS_P2: tl.constexpr, SPLIT: tl.constexpr,
    ):
        row = tl.program_id(0)
        head = tl.program_id(1)
        base = (row * tl.num_programs(1) + head) * num_splits
        used = tl.cdiv(tl.load(Lengths + row), SPLIT)  # splits that saw any position
        offs_s = tl.arange(0, SPLITS_P2)
        live = offs_s < used
        m = tl.load(M + base + offs_s, mask=live, other=float("-inf"))
        s = tl.load(S + base + offs_s, mask=live, other=0.0)
        m_max = tl.max(m, axis=0)
        w = tl.where(live, tl.exp(m - m_max), 0.0)  # (SPLITS_P2,)
        offs_d = tl.arange(0, D)
        acc = tl.load(Acc + (base + offs_s[:, None]) * D + offs_d[None, :],
                      mask=live[:, None], other=0.0)  # (SPLITS_P2, D)
        out = tl.sum(acc * w[:, None], axis=0) / tl.sum(s * w, axis=0)
        tl.store(Out + row * stride_ob + head * stride_oh + offs_d, out.to(Out.dtype.element_ty))
