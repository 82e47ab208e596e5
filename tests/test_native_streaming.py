"""The native engine's streaming interface (CPU, tiny random model): `submit` returns at once,
each page's future completes when that page is done (no batch barrier), cancellation before
start, `close`, and a failing callback that does not stop the engine."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest
from PIL import Image
from test_native_engine import engine, prompts

from core_model.engines.interface import EngineClosed, PageRequest, as_streaming

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_short_page_finishes_while_a_long_one_still_decodes():
    eng = engine(suppress_eos=True, admit_wait_s=0)  # a page alone is admitted at once
    order: list[str] = []
    done = threading.Event()
    long_future = eng._enqueue([_seq(eng, "long", 60)])[0]
    long_future.add_done_callback(lambda f: (order.append("long"), done.set()))
    short_future = eng._enqueue([_seq(eng, "short", 3)])[0]
    short_future.add_done_callback(lambda f: order.append("short"))
    assert short_future.result(timeout=60).num_output_tokens == 3
    assert not long_future.done(), "the short page waited for the long one"
    assert long_future.result(timeout=60).num_output_tokens == 60
    assert order == ["short", "long"]
    eng.close()


def test_pages_submitted_while_others_decode_join_the_running_batch():
    eng = engine(suppress_eos=True, admit_wait_s=0)
    first = eng._enqueue([_seq(eng, "a", 40)])[0]
    started = eng.stats["decode_steps"]
    later = eng._enqueue([_seq(eng, "b", 5)])[0]
    assert later.result(timeout=60).num_output_tokens == 5
    assert first.result(timeout=60).num_output_tokens == 40
    assert eng.stats["decode_steps"] - started < 40 + 5, "the second page ran after the first"
    eng.close()


def test_pages_arriving_one_by_one_while_others_decode_are_admitted_in_groups():
    """While a page decodes, single arrivals wait for a group of `min_admit` (one encoder
    call and prefill for the group), then all join the running batch; a group that does not
    fill is admitted once its first page has waited `admit_wait_s`."""
    eng = engine(suppress_eos=True, max_len=256, min_admit=3, admit_wait_s=60)
    slow = _seq(eng, "long", 200)
    slow.on_token = lambda token, delta: time.sleep(0.005)  # a long page: ~1 s or more
    long_page = eng._enqueue([slow])[0]
    while eng.stats["decode_steps"] < 2:  # it runs
        threading.Event().wait(0.01)
    with eng._wake:  # three arrivals before the engine's next look (else each would be
        # the last page of a stream, admitted at once: nothing else on its way)
        shorts = [eng._enqueue([_seq(eng, f"s{i}", 4)])[0] for i in range(3)]
    assert [f.result(timeout=60).num_output_tokens for f in shorts] == [4, 4, 4]
    assert not long_page.done(), "the group waited for the long page"
    assert eng.stats["admissions"] == 2  # the long page, then the three together
    eng.config.admit_wait_s = 0.1  # one more page: no group forms, it goes after 0.1 s
    alone = eng._enqueue([_seq(eng, "alone", 4)])[0]
    assert alone.result(timeout=60).num_output_tokens == 4 and not long_page.done()
    assert eng.stats["admissions"] == 3
    assert long_page.result(timeout=60).num_output_tokens == 200
    eng.close()


def test_cancelled_before_start_is_never_run_and_close_fails_the_rest():
    eng = engine(suppress_eos=True, max_batch_size=1)
    busy = eng._enqueue([_seq(eng, "busy", 30)])[0]
    queued = eng._enqueue([_seq(eng, "queued", 5)])[0]
    assert queued.cancel()
    assert busy.result(timeout=60).num_output_tokens == 30
    with pytest.raises(CancelledError):
        queued.result()
    tail = eng._enqueue([_seq(eng, "tail", 500)])[0]
    eng.close()
    with pytest.raises(EngineClosed):
        tail.result(timeout=60)
    with pytest.raises(EngineClosed):
        eng.generate_ids(prompts(1), max_new_tokens=2)


def test_a_failing_token_callback_does_not_stop_the_engine():
    eng = engine(suppress_eos=True)

    def boom(index, token, delta):
        raise RuntimeError("caller bug")

    results = eng.generate_ids(prompts(3), max_new_tokens=6, on_token=boom)
    assert [r.num_output_tokens for r in results] == [6, 6, 6]
    assert eng.generate_ids(prompts(1), max_new_tokens=4)[0].num_output_tokens == 4
    eng.close()


def test_a_page_whose_image_cannot_be_prepared_is_an_error_result():
    eng = engine()
    broken = Image.new("RGB", (0, 0))
    (result,) = eng.generate([PageRequest(image=broken, mode="base", key="k")])
    assert result.finish_reason == "error" and "cannot prepare the image" in result.error
    assert result.key == "k"
    assert as_streaming(eng) is eng
    eng.close()


def _seq(eng, key: str, length: int):
    from core_model.engines.sequence import Sequence

    return Sequence(next(eng._count), length, prompt_ids=prompts(1)[0], key=key)


def test_an_engine_dropped_without_close_leaves_no_thread_and_is_freed(monkeypatch):
    import gc
    import weakref

    import core_model.engines.native as native

    monkeypatch.setattr(native, "IDLE_EXIT_S", 0.05)
    eng = engine(suppress_eos=True)
    assert eng.generate_ids(prompts(2), max_new_tokens=3)[0].num_output_tokens == 3
    thread = eng._thread
    ref = weakref.ref(eng)
    del eng
    if thread is not None:
        thread.join(timeout=10)
        assert not thread.is_alive(), "an idle engine thread lives on"
    gc.collect()
    assert ref() is None, "the engine (and its model) is still referenced"


def test_an_idle_engine_starts_again_on_the_next_page(monkeypatch):
    import time

    import core_model.engines.native as native

    monkeypatch.setattr(native, "IDLE_EXIT_S", 0.05)
    eng = engine(suppress_eos=True)
    assert eng.generate_ids(prompts(1), max_new_tokens=2)[0].num_output_tokens == 2
    time.sleep(0.3)
    assert eng._thread is None
    assert eng.generate_ids(prompts(2), max_new_tokens=4)[1].num_output_tokens == 4
    eng.close()



def test_a_prompt_that_cannot_be_built_fails_its_page_only():
    eng = engine()  # its test tokenizer cannot encode text: an image page's prompt fails
    image_page = PageRequest(image=Image.new("RGB", (300, 400), "white"), mode="tiny")
    (result,) = eng.generate([image_page])
    assert result.finish_reason == "error" and "cannot build the prompt" in result.error
    assert eng.generate_ids(prompts(1), max_new_tokens=3)[0].num_output_tokens == 3  # goes on
    eng.close()


def test_pages_being_admitted_when_the_engine_breaks_fail_instead_of_hanging():
    eng = engine(suppress_eos=True)

    def broken_prefill(*args, **kwargs):
        raise RuntimeError("the GPU fell off the bus (simulated)")

    eng.runner.prefill = broken_prefill
    futures = eng._enqueue([_seq(eng, "a", 5), _seq(eng, "b", 5)])
    for future in futures:
        with pytest.raises(RuntimeError, match="fell off the bus"):
            future.result(timeout=30)
    with pytest.raises(EngineClosed, match="broken"):
        eng.generate_ids(prompts(1), max_new_tokens=2)
