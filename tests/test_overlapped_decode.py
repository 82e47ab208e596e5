"""Overlapped decode steps (CPU, tiny random decoder): while the running pages stay the same,
the engine launches each step before reading the last one's tokens, feeding it those tokens
where they are. The pages must get exactly the tokens of one step at a time: pages that
finish in between, preempted pages and the n-gram and loop rules included."""

from __future__ import annotations

import pytest
from test_native_engine import engine, prompts

from core_model.engines.sequence import Sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIMITS = [5, 40, 9, 33, 2, 17, 60, 12]  # pages finish at many different steps


def run(limits: list[int], **options) -> tuple[list[list[int]], dict]:
    eng = engine(**options)
    futures = [eng._enqueue([Sequence(i, n, prompt_ids=p)])[0]
               for i, (p, n) in enumerate(zip(prompts(len(limits)), limits, strict=True))]
    tokens = [f.result(timeout=120).token_ids for f in futures]
    return tokens, dict(eng.stats)


@pytest.mark.parametrize("options", [
    {"suppress_eos": True},
    {"no_repeat_ngram_size": 3, "ngram_window": None},  # the rule reads each page's history
])
def test_overlapped_steps_give_the_tokens_of_one_step_at_a_time(options):
    overlapped, stats = run(LIMITS, overlap=True, **options)
    serial, serial_stats = run(LIMITS, overlap=False, **options)
    assert overlapped == serial
    if options.get("suppress_eos"):
        assert [len(t) for t in overlapped] == LIMITS  # no page took a token too many
    assert stats["decode_overlapped"] > stats["decode_steps"] // 2  # most steps overlapped
    assert serial_stats["decode_overlapped"] == 0
    # A page that finished while the next step was in flight ran once more; its token is dropped.
    assert stats["decode_rows"] == serial_stats["decode_rows"]


def test_overlapped_steps_with_preemption_give_the_same_tokens():
    limits = [150] * 8
    roomy, _ = run(limits, overlap=False, suppress_eos=True, max_len=256)
    tight, stats = run(limits, overlap=True, suppress_eos=True, max_len=256, kv_blocks=8)
    assert stats["preempted"] > 0 and stats["decode_overlapped"] > 0
    assert tight == roomy


def test_a_loop_found_while_the_next_step_runs_stops_the_page_at_the_same_token():
    # check_every 1: the loop check runs every step, so its flag is read from the overlapped step.
    from core_model.engines.loop_detect import LoopDetector

    results = []
    for overlap in (True, False):
        eng = engine(suppress_eos=True, detect_loops=True, overlap=overlap, max_len=512)
        eng.loop_detector = LoopDetector(max_period=8, min_span_tokens=32, check_every=1)
        out = eng.generate_ids(prompts(4), max_new_tokens=300)
        results.append([(r.finish_reason, r.token_ids) for r in out])
    assert results[0] == results[1]
    assert any(reason == "repetition" for reason, _ in results[0])  # random weights loop
