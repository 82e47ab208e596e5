"""The native engine on a tiny random decoder (CPU): greedy determinism, batch invariance,
per-sequence stopping, the length limit, slot refill, streaming and EOS suppression."""

from __future__ import annotations

import pytest
import torch

from core_model.config import ClipConfig, DecoderConfig, DeepseekOCRConfig, SamConfig
from core_model.engines.native import EngineConfig, NativeEngine
from core_model.model import DeepseekOCRForCausalLM

EOS = 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingTokenizer:
    """Decodes token i as 'tI ' (enough to check text and streaming)."""

    def decode(self, ids):
        return "".join(f"t{i} " for i in ids)


def tiny_model(seed: int = 0) -> DeepseekOCRForCausalLM:
    torch.manual_seed(seed)
    cfg = DecoderConfig(
        vocab_size=96, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
        n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=3,
        max_position_embeddings=256, eos_token_id=EOS,
    )
    vision = {  # unused here (prompts of token ids): tiny, so building the model costs nothing
        "sam": SamConfig(width=8, layers=1, heads=1, global_attn_indexes=(0,),
                         downsample_channels=(8, 8), mlp_dim=8, out_chans=8),
        "clip": ClipConfig(width=8, layers=1, heads=1, mlp_dim=8),
        "projector_input_dim": 16,
    }
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig(decoder=cfg, **vision)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model


def engine(model=None, **options) -> NativeEngine:
    options = {"max_batch_size": 8, "max_len": 128, "no_repeat_ngram_size": 0,
               "detect_loops": False, **options}
    return NativeEngine(model or tiny_model(), CountingTokenizer(), EngineConfig(**options))


def prompts(n: int, seed: int = 5) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = [3, 17, 8, 30, 5, 12, 24, 9, 14, 6][:n]
    return [[0] + torch.randint(3, 96, (t,), generator=g).tolist() for t in lengths]


def test_greedy_decoding_is_deterministic():
    eng = engine(suppress_eos=True)
    first = eng.generate_ids(prompts(3), max_new_tokens=12)
    second = eng.generate_ids(prompts(3), max_new_tokens=12)
    assert [r.token_ids for r in first] == [r.token_ids for r in second]
    assert all(len(r.token_ids) == 12 for r in first)
    assert len({tuple(r.token_ids) for r in first}) > 1  # different prompts, different outputs


def test_batch_invariance_alone_and_in_a_batch_of_8_prompts_of_different_lengths():
    eng = engine(suppress_eos=True)
    batch = prompts(8)
    together = eng.generate_ids(batch, max_new_tokens=16)
    for i, prompt in enumerate(batch):
        alone = eng.generate_ids([prompt], max_new_tokens=16)[0]
        assert alone.token_ids == together[i].token_ids, f"prompt {i} differs in the batch"


def test_refill_of_finished_slots_gives_the_same_tokens():
    small = engine(max_batch_size=3, suppress_eos=True)  # 8 prompts through 3 slots
    big = engine(suppress_eos=True)
    limits = prompts(8)
    a = small.generate_ids(limits, max_new_tokens=10)
    b = big.generate_ids(limits, max_new_tokens=10)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


class EosWhenFirstTokenEven:
    """Forces EOS after 3 tokens for sequences whose first output token is even."""

    def apply(self, logits, tokens, lengths):
        stop = (lengths >= 3) & (tokens[:, 0] % 2 == 0)
        logits[stop, EOS] = float("inf")


def test_per_sequence_stop_on_eos_leaves_the_others_running():
    free_run = engine(suppress_eos=True).generate_ids(prompts(8), max_new_tokens=20)
    eng = engine()
    eng.ngram = EosWhenFirstTokenEven()
    results = eng.generate_ids(prompts(8), max_new_tokens=20)
    stopped = [r for r in results if r.finish_reason == "eos"]
    assert stopped and len(stopped) < len(results)  # both kinds occur
    for r, ref in zip(results, free_run, strict=True):
        assert EOS not in r.token_ids
        if ref.token_ids[0] % 2 == 0:
            assert r.finish_reason == "eos" and r.token_ids == ref.token_ids[:3]
        else:
            assert r.finish_reason == "length" and r.token_ids == ref.token_ids


def test_length_finish_and_text():
    eng = engine(suppress_eos=True)
    (r,) = eng.generate_ids([[0, 5, 6]], max_new_tokens=5)
    assert r.finish_reason == "length" and len(r.token_ids) == 5
    assert r.text == CountingTokenizer().decode(r.token_ids)
    assert r.num_prompt_tokens == 3
    assert {"queue", "prefill", "decode", "total"} <= set(r.timings)


def test_prompt_longer_than_a_slot_is_an_error_not_a_drop():
    eng = engine(max_len=32)
    results = eng.generate_ids([[0] * 40, [0, 4, 5]], max_new_tokens=4)
    assert results[0].finish_reason == "error" and "page 0" in results[0].error
    assert results[1].finish_reason in ("eos", "length")


def test_streaming_callback_sees_every_token_in_order():
    eng = engine(suppress_eos=True)
    seen: dict[int, list[int]] = {}
    text: dict[int, str] = {}

    def on_token(index, token, delta):
        seen.setdefault(index, []).append(token)
        text[index] = text.get(index, "") + delta

    results = eng.generate_ids(prompts(4), max_new_tokens=7, on_token=on_token)
    for i, r in enumerate(results):
        assert seen[i] == r.token_ids
        assert text[i] == r.text


def test_eos_suppression_reaches_the_limit():
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.lm_head.weight[EOS] = 10.0  # EOS would win at once
    assert engine(model).generate_ids([[0, 3]], max_new_tokens=6)[0].finish_reason == "eos"
    r = engine(model, suppress_eos=True).generate_ids([[0, 3]], max_new_tokens=6)[0]
    assert r.finish_reason == "length" and len(r.token_ids) == 6


def test_rules_are_applied_and_loop_stops_with_repetition():
    class BanToken:
        def apply(self, logits, tokens, lengths):
            logits[:, 11] = float("-inf")

    class StopAtFour:
        def update(self, tokens, lengths):
            return lengths >= 4

    eng = engine(suppress_eos=True)
    eng.ngram, eng.loop_detector = BanToken(), StopAtFour()
    results = eng.generate_ids(prompts(3), max_new_tokens=10)
    for r in results:
        assert r.finish_reason == "repetition" and len(r.token_ids) == 4
        assert 11 not in r.token_ids
