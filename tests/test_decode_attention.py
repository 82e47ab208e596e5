"""The length-aware decode attention kernel (GPU): equal to masked SDPA for every row length
(1, chunk boundaries, the whole cache), grouped queries, and in the engine: greedy tokens with
the kernel equal those with masked SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core_model import decode_attention

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not decode_attention.is_available(torch.device("cuda"))
                       if torch.cuda.is_available() else True,
                       reason="needs a CUDA device and Triton"),
]


def paged(k, block_size=128, seed=0):
    """A contiguous (B, Hkv, T, D) cache as scattered blocks: (blocks, Hkv, block, D) and the
    block table (B, T // block) in a shuffled block order."""
    B, H, T, D = k.shape
    n = T // block_size
    order = torch.randperm(B * n, generator=torch.Generator().manual_seed(seed)) + 1
    blocks = torch.zeros(1 + B * n, H, block_size, D, device=k.device, dtype=k.dtype)
    tables = order.view(B, n).to(k.device, torch.int32)
    blocks[tables.long().flatten()] = k.view(B, H, n, block_size, D).transpose(1, 2).reshape(-1, H, block_size, D)
    return blocks, tables


def reference(q, k, v, lengths):
    B, H, D = q.shape
    group = H // k.shape[1]
    rows = []
    for b in range(B):
        n = int(lengths[b])
        kb = k[b, :, :n].repeat_interleave(group, 0).float()
        vb = v[b, :, :n].repeat_interleave(group, 0).float()
        rows.append(F.scaled_dot_product_attention(q[b, :, None].float(), kb, vb)[:, 0])
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads"), [(10, 10), (8, 2)])
def test_kernel_equals_sdpa_for_every_length(dtype, heads, kv_heads):
    torch.manual_seed(0)
    T, D = 2048, 128
    split = decode_attention.SPLIT
    lengths = torch.tensor([1, 2, 63, 64, 65, 127, 128, 129, split - 1, split, split + 1,
                            3 * split, T], device="cuda")
    B = len(lengths)
    q = torch.randn(B, heads, D, device="cuda", dtype=dtype)
    k = torch.randn(B, kv_heads, T, D, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    (k_blocks, tables), (v_blocks, _) = paged(k), paged(v)
    out = decode_attention.decode_attention(q, k_blocks, v_blocks, tables, lengths, D**-0.5)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert out.dtype == dtype and out.shape == q.shape
    assert (out.float() - reference(q, k, v, lengths)).abs().max().item() < tol


def test_kernel_addresses_a_full_size_cache():
    """A full-size layer cache holds more than 2**31 elements: offsets must be 64-bit."""
    H, D, block = 10, 128, 128
    num_blocks = 2**31 // (H * block * D) + 64
    k = torch.zeros(num_blocks, H, block, D, device="cuda", dtype=torch.bfloat16)
    v = torch.zeros_like(k)
    v[num_blocks - 1, :, :5] = 1.0
    tables = torch.zeros(4, 8, dtype=torch.int32, device="cuda")
    tables[3, 0] = num_blocks - 1  # the last row reads the last block
    q = torch.randn(4, H, D, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((4,), 5, device="cuda")
    out = decode_attention.decode_attention(q, k, v, tables, lengths, D**-0.5)
    assert torch.allclose(out[3].float(), torch.ones(H, D, device="cuda"))
    assert out[:3].abs().max().item() == 0


def test_engine_tokens_equal_with_kernel_and_with_sdpa():
    from test_native_engine import CountingTokenizer, prompts, tiny_model

    from core_model.engines.native import EngineConfig, NativeEngine

    results = []
    for attention in ("kernel", "sdpa"):
        model = tiny_model().cuda()
        cfg = EngineConfig(max_batch_size=8, max_len=128, suppress_eos=True, attention=attention,
                           no_repeat_ngram_size=0, detect_loops=False)
        eng = NativeEngine(model, CountingTokenizer(), cfg)
        assert eng.runner.use_kernel == (attention == "kernel")
        results.append([r.token_ids for r in eng.generate_ids(prompts(8), max_new_tokens=40)])
        eng.close()
    assert results[0] == results[1]
