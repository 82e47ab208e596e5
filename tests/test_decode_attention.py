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


def reference(q, k_cache, v_cache, lengths):
    B, H, D = q.shape
    group = H // k_cache.shape[1]
    rows = []
    for b in range(B):
        n = int(lengths[b])
        k = k_cache[b, :, :n].repeat_interleave(group, 0).float()
        v = v_cache[b, :, :n].repeat_interleave(group, 0).float()
        rows.append(F.scaled_dot_product_attention(q[b, :, None].float(), k, v)[:, 0])
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads"), [(10, 10), (8, 2)])
def test_kernel_equals_sdpa_for_every_length(dtype, heads, kv_heads):
    torch.manual_seed(0)
    T, D = 2048, 128
    split = decode_attention.SPLIT
    lengths = torch.tensor([1, 2, 63, 64, 65, split - 1, split, split + 1, 3 * split, T],
                           device="cuda")
    B = len(lengths)
    q = torch.randn(B, heads, D, device="cuda", dtype=dtype)
    k = torch.randn(B + 3, kv_heads, T, D, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    out = decode_attention.decode_attention(q, k, v, lengths, D**-0.5)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    assert out.dtype == dtype and out.shape == q.shape
    assert (out.float() - reference(q, k, v, lengths)).abs().max().item() < tol


def test_kernel_addresses_a_full_size_cache():
    """A full-size layer cache holds more than 2**31 elements: offsets must be 64-bit."""
    S, H, T, D = 230, 10, 8192, 128
    k = torch.zeros(S, H, T, D, device="cuda", dtype=torch.bfloat16)
    v = torch.zeros_like(k)
    v[S - 1, :, :5] = 1.0
    q = torch.randn(S, H, D, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((S,), 5, device="cuda")
    out = decode_attention.decode_attention(q, k, v, lengths, D**-0.5)
    assert torch.allclose(out[S - 1].float(), torch.ones(H, D, device="cuda"))
    assert out[: S - 1].abs().max().item() == 0


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
