"""GPU checks of the fast paths (run on the lent GPU; skipped without CUDA): the packed MoE
backends in bf16 against the reference loop, and CUDA-graph decoding against eager decoding."""

from __future__ import annotations

import pytest
import torch

from core_model.moe import MoE, grouped_mm_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("tokens", [1, 5, 64, 300])
@pytest.mark.parametrize("backend", ["gather", "dense", "grouped"])
@torch.no_grad()
def test_moe_backends_bf16_match_reference(backend, tokens):
    torch.manual_seed(tokens)
    moe = MoE(1280, 896, num_experts=64, top_k=6, num_shared_experts=2).cuda().to(torch.bfloat16)
    for p in moe.parameters():
        p.normal_(0, 0.02)
    x = torch.randn(tokens, 1280, device="cuda", dtype=torch.bfloat16)
    moe.backend = "loop"
    ref = moe(x)
    moe.pack()
    if backend == "grouped" and not grouped_mm_available(x):
        pytest.skip("torch._grouped_mm needs Hopper and bf16")
    moe.backend = backend
    out = moe(x)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < 1e-2


@torch.no_grad()
@pytest.mark.parametrize(("ngram", "window"), [(0, None), (3, None), (3, 8)])
def test_graph_decode_equals_eager_decode(ngram, window):
    """The decode graph holds the model step and the token choice (EOS and n-gram rules)."""
    from test_native_engine import CountingTokenizer, prompts, tiny_model

    from core_model.engines.native import EngineConfig, NativeEngine

    results = []
    for eager in (True, False):
        model = tiny_model().cuda()
        cfg = EngineConfig(max_batch_size=8, max_len=128, eager=eager, suppress_eos=True,
                           no_repeat_ngram_size=ngram, ngram_window=window, detect_loops=False)
        eng = NativeEngine(model, CountingTokenizer(), cfg)
        results.append([r.token_ids for r in eng.generate_ids(prompts(8), max_new_tokens=24)])
        if not eager:
            assert eng.runner._graphs, "no CUDA graph was captured"
    assert results[0] == results[1]



@torch.no_grad()
def test_a_decode_step_is_queued_without_waiting_for_the_device():
    """Launching a step (block-table entries written, inputs copied, graph replayed) and
    queueing what follows it (history, loop check, copies to the host) must not wait for
    the GPU: overlapped steps rely on it. CUDA's sync debug mode raises on any wait."""
    from test_native_engine import CountingTokenizer, prompts, tiny_model

    from core_model.engines.native import EngineConfig, NativeEngine

    eng = NativeEngine(tiny_model().cuda(), CountingTokenizer(),
                       EngineConfig(max_batch_size=8, max_len=256, suppress_eos=True))
    eng.generate_ids(prompts(4), max_new_tokens=4)  # graphs captured, kernels compiled
    seqs = [_seq(p) for p in prompts(4)]  # the engine thread is idle: steps driven from here
    for i, s in enumerate(seqs):
        s.slot, s.output_ids = i, [5]
        eng.runner.blocks.grow(i, 200)  # entries waiting for the next flush
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step = eng._launch(seqs)
        chained = eng._launch(seqs, after=step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert eng._take(step) == 4 and eng._take(chained) == 4
    for i in range(4):
        eng.runner.blocks.release(i)
    eng.close()


def _seq(prompt):
    from core_model.engines.sequence import Sequence

    return Sequence(0, 100, prompt_ids=list(prompt))
