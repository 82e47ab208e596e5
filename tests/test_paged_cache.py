"""The paged KV cache (CPU, tiny random decoder): blocks handed out and taken back, padding
written to scratch only, scattered blocks read exactly like contiguous ones, and the engine's
preemption when blocks run out: the preempted pages are read again and give the same tokens."""

from __future__ import annotations

import pytest
import torch
from test_native_engine import engine, prompts, tiny_model

from core_model.engines.kv_cache import SCRATCH, BlockAllocator, KVCache, blocks_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cache_for(model, num_blocks: int, max_seqs: int = 4, max_len: int = 256) -> KVCache:
    return KVCache(model.config.decoder, num_blocks, max_seqs=max_seqs, max_len=max_len,
                   device="cpu", dtype=torch.float32)


def test_blocks_are_handed_out_written_to_the_table_and_taken_back():
    cache = cache_for(tiny_model(), num_blocks=6)
    blocks = BlockAllocator(cache)
    assert blocks.num_free == 5  # block 0 is scratch
    assert blocks.grow(0, 129) and blocks.needed(0, 256) == 0  # 2 blocks of 128
    assert blocks.grow(1, 1) and not blocks.grow(2, 3 * 128)  # 2 + 1 taken, 2 free < 3
    assert blocks.num_free == 2 and 2 not in blocks.owned  # a failed grow takes nothing
    blocks.flush()
    table = cache.block_table
    assert table[0, :2].tolist() == blocks.owned[0] and table[1, 0].item() == blocks.owned[1][0]
    assert table[cache.pad_slot].eq(SCRATCH).all()
    assert len({*blocks.owned[0], *blocks.owned[1]}) == 3 and SCRATCH not in blocks.owned[0]
    blocks.release(0)
    assert blocks.num_free == 4 and table[0].eq(SCRATCH).all()
    assert blocks.grow(2, 4 * 128)


@torch.no_grad()
def test_prefill_padding_writes_only_to_scratch():
    model = tiny_model()
    cache = cache_for(model, num_blocks=8)
    cache.bind(model)
    blocks = BlockAllocator(cache)
    blocks.grow(0, 3)
    blocks.grow(1, 130)
    blocks.flush()
    x = torch.randn(2, 130, model.config.decoder.hidden_size)
    ctx = cache.prefill_context(torch.tensor([0, 1]), torch.tensor([3, 130]), 130)
    model(x, torch.arange(130).expand(2, 130), ctx)
    k = cache.k[0]  # (blocks, heads, block, D) of layer 0
    first = blocks.owned[0][0]
    assert k[first, :, :3].abs().sum() > 0 and k[first, :, 3:].abs().sum() == 0
    untouched = set(range(1, 8)) - {*blocks.owned[0], *blocks.owned[1]}
    assert all(k[b].abs().sum() == 0 for b in untouched)


@torch.no_grad()
def test_scattered_blocks_give_the_same_logits_as_contiguous_ones():
    model = tiny_model()
    ids = torch.randint(3, 96, (2, 140))
    T0 = 100

    def run(cache: KVCache) -> torch.Tensor:
        cache.bind(model)
        slots = torch.arange(2)
        ctx = cache.prefill_context(slots, torch.full((2,), T0), T0)
        out = [model.compute_logits(model(model.embed(ids[:, :T0]), torch.arange(T0).expand(2, T0), ctx))[:, -1]]
        for t in range(T0, 140):
            positions = torch.full((2,), t)
            step = cache.decode_context(slots, positions, use_kernel=False, span=t + 1)
            out.append(model.compute_logits(model(model.embed(ids[:, t : t + 1]), positions[:, None], step))[:, -1])
        return torch.stack(out)

    contiguous = run(KVCache.contiguous(model.config.decoder, 2, 256, device="cpu", dtype=torch.float32))
    scattered = cache_for(model, num_blocks=12, max_seqs=2)
    blocks = BlockAllocator(scattered)
    for tokens in (128, 256):  # interleaved: slot 1's blocks sit between slot 0's
        for slot in (1, 0):
            blocks.grow(slot, tokens)
    blocks.grow(0, 1)
    blocks.flush()
    assert blocks.owned[0] != sorted(blocks.owned[0]) or blocks.owned[0][1] - blocks.owned[0][0] > 1
    assert torch.equal(run(scattered), contiguous)


def test_pages_preempted_for_lack_of_blocks_finish_with_the_same_tokens():
    batch = prompts(8)
    roomy = engine(suppress_eos=True, max_len=256).generate_ids(batch, max_new_tokens=150)
    # 7 usable blocks of 128 for 8 pages growing to ~180 positions: pages must be preempted.
    tight = engine(suppress_eos=True, max_len=256, kv_blocks=8)
    results = tight.generate_ids(batch, max_new_tokens=150)
    assert tight.stats["preempted"] > 0
    assert [r.token_ids for r in results] == [r.token_ids for r in roomy]
    assert all(r.finish_reason == "length" and r.num_output_tokens == 150 for r in results)
    assert tight.runner.blocks.num_free == 7  # every block back


def test_decode_steps_run_only_the_running_pages():
    """Rows are compacted: once short pages finish, a long page in a high slot decodes in a
    batch of one, not in a batch as wide as its slot number."""
    eng = engine(suppress_eos=True)
    sizes: list[int] = []
    decode = eng.runner.decode
    eng.runner.decode = lambda tokens, *rest: sizes.append(len(tokens)) or decode(tokens, *rest)
    limits = [2] * 7 + [40]
    futures = [eng._enqueue([_seq(p, n)])[0] for p, n in zip(prompts(8), limits, strict=True)]
    assert [f.result(timeout=60).num_output_tokens for f in futures] == limits
    assert sizes[-1] == 1 and sizes.count(1) >= 30
    assert eng.stats["decode_rows"] == sum(limits) - len(limits)  # the prefill picks the first


def test_an_engine_sized_for_less_than_one_page_is_refused():
    with pytest.raises(RuntimeError, match="no room for one page"):
        engine(max_len=256, kv_blocks=blocks_for(256))


def _seq(prompt, limit):
    from core_model.engines.sequence import Sequence

    return Sequence(0, limit, prompt_ids=list(prompt))


def test_on_the_cpu_the_cache_fits_in_a_quarter_of_the_free_ram(monkeypatch):
    """A full-size model on a laptop must not ask for 500 GB of KV cache: the pool and the
    pages decoded at once shrink to what a quarter of the free RAM holds."""
    from core_model.engines import native

    roomy = engine(max_len=256)
    per_block = roomy.runner.cache.k[0, 0].numel() * 4 * 2 * roomy.runner.cache.k.shape[0]
    monkeypatch.setattr(native, "host_memory_free", lambda: 4 * 6 * per_block)
    small = engine(max_len=256, max_batch_size=8)
    assert small.runner.cache.num_blocks == 6 < roomy.runner.cache.num_blocks
    assert small.concurrency == 3  # 6 blocks, 2 a page of max_len 256
    results = small.generate_ids(prompts(4), max_new_tokens=20)
    assert [r.num_output_tokens for r in results] == [20] * 4
