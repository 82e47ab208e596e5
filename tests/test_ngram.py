"""NoRepeatNGram against plain-Python transcriptions of the HF and vLLM rules."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core_model.engines.ngram import NoRepeatNGram, hf_rule, vllm_rule

VOCAB = 12


def hf_banned(ids: list[int], n: int) -> set[int]:
    """HF NoRepeatNGramLogitsProcessor for one row: every n-gram of the whole sequence."""
    cur_len = len(ids)
    if cur_len + 1 < n:
        return set()
    prefix = tuple(ids[cur_len - n + 1 :])
    return {ids[i + n - 1] for i in range(cur_len - n + 1) if tuple(ids[i : i + n - 1]) == prefix}


def vllm_banned(output_ids: list[int], n: int, window: int, whitelist: set[int]) -> set[int]:
    """vLLM DeepSeek-OCR NoRepeatNGramLogitsProcessor for one request (generated ids only)."""
    if len(output_ids) < n:
        return set()
    prefix = tuple(output_ids[-(n - 1) :]) if n > 1 else ()
    start = max(0, len(output_ids) - window)
    end = len(output_ids) - n + 1
    banned = set()
    for i in range(start, end):
        ngram = tuple(output_ids[i : i + n])
        if ngram[:-1] == prefix:
            banned.add(ngram[-1])
    return banned - whitelist


def run_rule(rule, rows, prompt_lens=None, pad=-1, extra=3):
    """Pack rows into a right-padded buffer, apply the rule, return banned sets per row."""
    width = max(len(r) for r in rows) + extra
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        tokens[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    logits = torch.randn(len(rows), VOCAB)
    before = logits.clone()
    pl = None if prompt_lens is None else torch.tensor(prompt_lens)
    rule.apply(logits, tokens, lengths, pl)
    out = []
    for b in range(len(rows)):
        banned = set(torch.nonzero(torch.isneginf(logits[b])).flatten().tolist())
        kept = ~torch.isneginf(logits[b])
        assert torch.equal(logits[b][kept], before[b][kept]), "untouched logits must not change"
        out.append(banned)
    return out


rows_st = st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=40), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(rows=rows_st, n=st.integers(1, 6))
def test_global_rule_matches_hf(rows, n):
    got = run_rule(NoRepeatNGram(n), rows)
    assert got == [hf_banned(r, n) for r in rows]


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    rows=rows_st,
    n=st.integers(1, 6),
    window=st.integers(1, 15),
    whitelist=st.sets(st.integers(0, 3), max_size=2),
)
def test_windowed_rule_matches_vllm(data, rows, n, window, whitelist):
    prompt_lens = [data.draw(st.integers(0, len(r))) for r in rows]
    rule = NoRepeatNGram(n, window=window, whitelist_ids=sorted(whitelist))
    got = run_rule(rule, rows, prompt_lens)
    want = [
        vllm_banned(r[p:], n, window, whitelist) for r, p in zip(rows, prompt_lens, strict=True)
    ]
    assert got == want


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=rows_st, n=st.integers(1, 5))
def test_global_rule_with_prompt_lengths_ignores_prompt(data, rows, n):
    prompt_lens = [data.draw(st.integers(0, len(r))) for r in rows]
    got = run_rule(NoRepeatNGram(n), rows, prompt_lens)
    want = [
        hf_banned(r[p:], n) if len(r) - p >= n else set()
        for r, p in zip(rows, prompt_lens, strict=True)
    ]
    assert got == want


def test_known_case_hf_and_whitelist():
    # "a b c a b" with n=3: the prefix (a, b) occurred before followed by c -> ban c.
    a, b, c = 1, 2, 3
    assert run_rule(NoRepeatNGram(3), [[a, b, c, a, b]]) == [{c}]
    assert run_rule(NoRepeatNGram(3, window=10, whitelist_ids=[c]), [[a, b, c, a, b]]) == [set()]
    # The window excludes the old n-gram: it starts 3 tokens back, window 2 cannot see it.
    assert run_rule(NoRepeatNGram(3, window=2), [[a, b, c, a, b]]) == [set()]
    assert run_rule(NoRepeatNGram(3, window=5), [[a, b, c, a, b]]) == [{c}]


def test_edge_cases_empty_short_and_padding_values():
    rule = NoRepeatNGram(3)
    # empty row, row shorter than n, pad ids outside the vocabulary
    assert run_rule(rule, [[], [1], [1, 1], [1, 1, 1]], pad=10**6) == [set(), set(), set(), {1}]
    # window smaller than n bans nothing
    assert run_rule(NoRepeatNGram(4, window=3), [[1, 1, 1, 1, 1, 1]]) == [set()]


def test_bfloat16_logits_and_int32_tokens():
    logits = torch.zeros(1, VOCAB, dtype=torch.bfloat16)
    tokens = torch.tensor([[5, 6, 5, 0]], dtype=torch.int32)
    NoRepeatNGram(2).apply(logits, tokens, torch.tensor([3]))
    assert torch.isneginf(logits[0, 6]) and int(torch.isneginf(logits).sum()) == 1


def test_constructor_validates():
    with pytest.raises(ValueError, match="n must be"):
        NoRepeatNGram(0)
    with pytest.raises(ValueError, match="window"):
        NoRepeatNGram(3, window=0)
    assert vllm_rule().whitelist_ids == (128821, 128822)
    assert hf_rule().n == 20 and hf_rule().window is None


def test_large_batch_is_fast_enough_on_cpu():
    """B=64, L=8192, V=129280 on CPU (the GPU case is B=256): no (B, L, V) blow-up."""
    batch, length, vocab = 64, 8192, 129280
    tokens = torch.randint(0, 1000, (batch, length))
    lengths = torch.randint(length // 2, length, (batch,))
    logits = torch.zeros(batch, vocab)
    for rule in (NoRepeatNGram(20), NoRepeatNGram(30, window=90, whitelist_ids=[7])):
        rule.apply(logits, tokens, lengths)  # warm-up
        t0 = time.perf_counter()
        rule.apply(logits, tokens, lengths)
        assert time.perf_counter() - t0 < 3.0
