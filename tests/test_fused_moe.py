"""The fused top-k MoE kernels (`core_model/fused_moe.py`) against the `loop` backend.

The torch alignment (`align`) is checked everywhere; the Triton one (`align_triton`, what
`fused_moe` uses) must give exactly its tensors. The kernels run on a GPU (tests
marked `gpu`: full size, bf16, and inside a CUDA graph) or under Triton's CPU interpreter:
    TRITON_INTERPRET=1 PYTHONPATH=$PWD:/path/to/triton python -m pytest -q tests/test_fused_moe.py
Without Triton (CI) or without the interpreter on a CPU, the kernel tests skip.

The interpreter (Triton 3.6) handles bf16 in two ways a GPU does not: `tl.dot` multiplies the
raw 16-bit patterns as integers, and float32 -> bf16 truncates instead of rounding to nearest
even. The bf16 test patches both to do what the GPU does (`gpu_like_bf16`).
"""

from __future__ import annotations

import os

import pytest
import torch

from core_model import fused_moe as fm
from core_model.moe import MoE

INTERPRETED = fm.triton is not None and os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(
    not INTERPRETED, reason="needs Triton with TRITON_INTERPRET=1 (CPU interpreter)")
E, K, H, INTER = 8, 3, 64, 32  # experts, top-k, hidden, expert width


def small_moe(dtype=torch.float32, hidden=H, inter=INTER, device="cpu") -> MoE:
    torch.manual_seed(0)
    moe = MoE(hidden, inter, E, K, num_shared_experts=1).to(device, dtype)
    moe.pack()
    return moe


def routing(n: int, kind: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (n, K) float32, ids (n, K)): random experts, or every token on experts 0..K
    (expert 0 then holds more pairs than one block, experts K+1.. none)."""
    pool = E if kind == "random" else K + 1
    ids = torch.stack([torch.randperm(pool, generator=generator)[:K] for _ in range(n)])
    weights = torch.rand(n, K, generator=generator)
    return weights, ids


# -- alignment (pure torch, runs everywhere) -------------------------------------------------


@pytest.mark.parametrize("block_m", [16, 32])
@pytest.mark.parametrize(("n", "kind"), [(1, "random"), (17, "random"), (64, "skewed")])
def test_align_sorts_pairs_into_expert_blocks_of_static_size(n, kind, block_m):
    _, ids = routing(n, kind, torch.Generator().manual_seed(n))
    a = fm.align(ids, E, block_m)
    P = n * K
    rows = -(-(P + E * (block_m - 1)) // block_m) * block_m  # the worst case, whatever ids hold
    assert a.pair_of_row.shape == (rows,) and a.expert_of_block.shape == (rows // block_m,)
    assert a.pair_of_row.dtype == a.expert_of_block.dtype == torch.int32
    real = a.pair_of_row < P
    assert sorted(a.pair_of_row[real].tolist()) == list(range(P))  # each pair exactly once
    assert (a.pair_of_row[~real] == P).all()  # padding rows hold the sentinel
    counts = torch.bincount(ids.flatten(), minlength=E)
    used = int(((counts + block_m - 1) // block_m).sum())
    experts = a.expert_of_block[:used]
    assert (experts[1:] >= experts[:-1]).all() and (a.expert_of_block[used:] == -1).all()
    assert set(experts.tolist()) == set(ids.flatten().tolist())  # unhit experts get no block
    blocks = a.pair_of_row.view(-1, block_m)
    for b in range(used):  # every real row of a block is a pair of the block's expert
        pairs = blocks[b][blocks[b] < P].long()
        assert len(pairs) > 0 and (ids.flatten()[pairs] == experts[b]).all()
    assert (blocks[used:] == P).all()


def test_grouped_backend_on_the_shared_layout_equals_loop(monkeypatch):
    """The `grouped` backend lays pairs out with the same `expert_rows` as `fused`; with a
    reference `torch._grouped_mm` (one matmul per expert's rows) it computes the loop's MoE."""

    def grouped_mm(a, b, offs):
        out, start = torch.zeros(a.shape[0], b.shape[2]), 0
        for expert, end in enumerate(offs.tolist()):
            out[start:end] = a[start:end] @ b[expert]
            start = end
        return out

    monkeypatch.setattr(torch, "_grouped_mm", grouped_mm, raising=False)
    torch.manual_seed(0)
    moe = MoE(48, 24, num_experts=E, top_k=K, num_shared_experts=2)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    moe.pack()
    for n in (1, 17, 64):
        x = torch.randn(n, 48)
        weights, ids = moe.route(x)
        assert torch.allclose(moe._grouped(x, weights, ids), moe._loop(x, weights, ids), atol=1e-5)


# -- kernels under the CPU interpreter ----------------------------------------------------------


def decode_ids(n: int, experts: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """(n, 6) expert ids as DeepSeek-OCR's decode routes them (top-6), or skewed: "hot", every
    token on 6 of experts 0..6; "one", every pair on the last expert; "two", each pair on
    expert 0 or experts // 2 (repeats within a row, which the alignment does not mind)."""
    scores = torch.rand(n, experts, generator=generator)
    if kind == "hot":
        scores[:, :7] += 1
    elif kind == "one":
        return torch.full((n, 6), experts - 1)
    elif kind == "two":
        return torch.tensor([0, experts // 2])[torch.randint(0, 2, (n, 6), generator=generator)]
    return scores.topk(6, dim=1).indices


@needs_interpreter
@pytest.mark.parametrize("block_m", [16, 32, 64])
@pytest.mark.parametrize("n", [1, 2, 7, 32, 129, 512, 1024])
def test_align_triton_equals_torch_align(n, block_m):
    """Same rows, same order within each expert (the sort is stable), same block experts,
    for 64 experts and for a count that is not a power of two, random and skewed routing
    (one skew per block size: the interpreter takes ~0.4 s an alignment)."""
    g = torch.Generator().manual_seed(n * block_m)
    skew = {16: "hot", 32: "one", 64: "two"}[block_m]
    for experts in (64, 60):
        for kind in ("random", skew):
            ids = decode_ids(n, experts, kind, g)
            if kind == "random" and experts == 60:
                ids = ids.int()  # the kernels read int32 ids as well as int64
            ref, got = fm.align(ids, experts, block_m), fm.align_triton(ids, experts, block_m)
            assert got.block_m == block_m
            assert got.pair_of_row.dtype == got.expert_of_block.dtype == torch.int32
            assert torch.equal(got.pair_of_row, ref.pair_of_row), (experts, kind)
            assert torch.equal(got.expert_of_block, ref.expert_of_block), (experts, kind)



@needs_interpreter
@pytest.mark.parametrize(("n", "kind"), [(1, "random"), (3, "random"), (17, "random"),
                                         (64, "random"), (64, "skewed")])
def test_fused_equals_loop_in_float32(n, kind):
    moe = small_moe()
    x = torch.randn(n, H)
    weights, ids = routing(n, kind, torch.Generator().manual_seed(n))
    out = fm.fused_moe(x, moe.w_gate_up, moe.w_down, weights, ids)
    ref = moe._routed(x, weights, ids, "loop")
    assert out.shape == (n, H) and out.dtype == torch.float32
    assert (out - ref).abs().max().item() < 1e-5


@needs_interpreter
@pytest.mark.parametrize("block_m", [16, 32])
def test_fused_handles_partial_tiles_and_several_k_steps(block_m):
    """H and I not multiples of the 64-wide tiles: masked columns and reduction steps."""
    moe = small_moe(hidden=96, inter=80)
    x = torch.randn(20, 96)
    weights, ids = routing(20, "skewed", torch.Generator().manual_seed(1))
    out = fm.fused_moe(x, moe.w_gate_up, moe.w_down, weights, ids, block_m=block_m)
    assert (out - moe._routed(x, weights, ids, "loop")).abs().max().item() < 1e-5


@needs_interpreter
def test_unused_blocks_and_padding_rows_write_nothing():
    moe = small_moe()
    n = 5
    weights, ids = routing(n, "random", torch.Generator().manual_seed(2))
    x = torch.randn(n, H)
    a = fm.align(ids, E, 16)
    act = torch.full((a.pair_of_row.numel(), INTER), float("nan"))
    fm._gate_up_act(x, moe.w_gate_up, a, K, act)
    used = int((a.expert_of_block >= 0).sum()) * 16
    assert used < act.shape[0] and act[:used].isfinite().all() and act[used:].isnan().all()
    P = n * K
    y_and_guard = torch.full((P + 1, H), float("nan"))  # row P is where the sentinel points
    fm._down(act, moe.w_down, a, y_and_guard[:P])
    assert y_and_guard[:P].isfinite().all() and y_and_guard[P].isnan().all()


@needs_interpreter
def test_moe_backend_fused_equals_loop():
    moe = small_moe()
    x = torch.randn(2, 7, H)
    moe.backend = "loop"
    ref = moe(x)
    moe.backend = "fused"
    assert (moe(x) - ref).abs().max().item() < 1e-5


@pytest.fixture
def gpu_like_bf16(monkeypatch):
    """Make the interpreter's bf16 do what a GPU does: `tl.dot` on the values (widened to
    float32, exact for bf16), and float32 -> bf16 rounding to nearest even."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    cast, dot = builder.cast_impl, builder.create_dot

    def widen(h):
        if h.dtype.scalar != tl.bfloat16:
            return h
        return interpreter.TensorHandle((h.data.astype(np.uint32) << 16).view(np.float32),
                                        tl.float32)

    def rounding_cast(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bf16 = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16)
            return interpreter.TensorHandle(bf16.view(torch.int16).numpy().view(np.uint16),
                                            tl.bfloat16)
        return cast(self, src, dst_type)

    monkeypatch.setattr(builder, "cast_impl", rounding_cast)
    monkeypatch.setattr(builder, "create_dot", lambda self, a, b, *rest: dot(
        self, widen(a), widen(b), *rest))


@needs_interpreter
@pytest.mark.parametrize(("n", "kind"), [(3, "random"), (40, "skewed")])
def test_fused_equals_loop_in_bf16(gpu_like_bf16, n, kind):
    moe = small_moe(torch.bfloat16)
    x = torch.randn(n, H, dtype=torch.bfloat16)
    weights, ids = routing(n, kind, torch.Generator().manual_seed(n))
    out = fm.fused_moe(x, moe.w_gate_up, moe.w_down, weights, ids)
    ref = moe._routed(x, weights, ids, "loop")
    assert out.dtype == torch.bfloat16
    diff = (out.float() - ref.float()).abs()
    # Same rounding points; only float32 summation order differs, flipping a rare rounding.
    assert (diff == 0).float().mean().item() > 0.9
    assert diff.max().item() <= 2 ** -7 * ref.float().abs().max().item()


# -- GPU, full size ------------------------------------------------------------------------------

needs_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and fm.triton is not None) or INTERPRETED,
    reason="needs a CUDA device and Triton (not the interpreter)")


@pytest.fixture(scope="module")
def full_moe() -> MoE:
    """One DeepSeek-OCR MoE layer (64 experts, top-6, H=1280, I=896) in bf16, random weights."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            moe = MoE(1280, 896, num_experts=64, top_k=6, num_shared_experts=2)
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.02)
    moe.pack()
    return moe


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("n", [1, 32, 256, 512])
@torch.no_grad()
def test_full_size_fused_equals_loop_as_dense_does(full_moe, n):
    x = torch.randn(n, 1280, device="cuda", dtype=torch.bfloat16)
    weights, ids = full_moe.route(x)
    ref = full_moe._routed(x, weights, ids, "loop").float()
    fused = full_moe._routed(x, weights, ids, "fused").float()
    dense = full_moe._routed(x, weights, ids, "dense").float()
    err, dense_err = (fused - ref).abs().max().item(), (dense - ref).abs().max().item()
    two_steps = 2 ** -6 * ref.abs().max().item()  # two bf16 steps at the largest output
    assert err <= max(2 * dense_err, two_steps), (err, dense_err, two_steps)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("n", [32, 256])
@torch.no_grad()
def test_full_size_fused_replays_in_a_cuda_graph(full_moe, n):
    """Captured once, replayed on new activations and new routing: the graph's fixed launch
    shapes cover any routing, and it gives what an eager call gives."""
    x = torch.randn(n, 1280, device="cuda", dtype=torch.bfloat16)
    weights, ids = full_moe.route(x)
    args = (full_moe.w_gate_up, full_moe.w_down)
    fm.fused_moe(x, *args, weights, ids)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fm.fused_moe(x, *args, weights, ids)
    x.copy_(torch.randn_like(x))
    new_weights, new_ids = full_moe.route(x)
    new_ids[: n // 2] = torch.arange(6, device="cuda")  # half the tokens on experts 0..5
    weights.copy_(new_weights)
    ids.copy_(new_ids)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, fm.fused_moe(x, *args, weights, ids))
    ref = full_moe._routed(x, weights, ids, "loop").float()
    assert (out.float() - ref).abs().max().item() <= 2 ** -6 * ref.abs().max().item()
