"""A random checkpoint written with the released names loads by path and reads pages end to
end (preprocessing, DeepEncoder, prompt, decoder). Needs the inputs and vision modules
(`core_model.checkpoint`, `preprocess`, `deep_encoder`); skipped where they are absent."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.importorskip("core_model.checkpoint")
pytest.importorskip("core_model.preprocess")
pytest.importorskip("core_model.deep_encoder")

from core_model.engines.interface import PageRequest  # noqa: E402
from core_model.engines.native import NativeEngine  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


@pytest.mark.slow
def test_random_checkpoint_loads_by_path_and_reads_pages(checkpoint):
    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_batch_size=4,
                                          max_new_tokens=6, no_repeat_ngram_size=0)
    pages = [
        PageRequest(Image.new("RGB", (300, 200), "white"), mode="base", key="a"),
        PageRequest(Image.new("RGB", (1400, 900), (20, 90, 200)), mode="gundam", key="b"),
        PageRequest(Image.new("L", (500, 700), 128), mode="small", key="c"),
    ]
    results = engine.generate(pages)
    assert [r.key for r in results] == ["a", "b", "c"]
    for r in results:
        assert r.finish_reason in ("eos", "length"), r.error
        assert 0 < r.num_vision_tokens < r.num_prompt_tokens
        assert len(r.token_ids) <= 6 and isinstance(r.text, str)
    assert results[0].num_vision_tokens == 16 * 17 + 1  # Base: 16x16 grid, newlines, separator
    assert results[1].num_vision_tokens > results[0].num_vision_tokens  # Gundam adds tiles


@pytest.mark.slow
def test_an_encoder_call_out_of_memory_is_tried_again_in_smaller_calls(checkpoint):
    """Out of GPU memory in the DeepEncoder (activations beside the KV cache): the call is
    tried again with half as many views until it fits; only where one view does not fit do
    the pages fail, with the reason, and the engine goes on."""
    import torch

    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_batch_size=4,
                                          max_new_tokens=3, suppress_eos=True,
                                          max_views_per_call=16)
    encode, calls, fits = engine.model.encode_images, [], {"views": 2}

    def encode_images(images, max_views_per_call=None):
        calls.append(max_views_per_call)
        if max_views_per_call > fits["views"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return encode(images, max_views_per_call=max_views_per_call)

    engine.model.encode_images = encode_images
    pages = [PageRequest(Image.new("RGB", (300, 400), "white"), mode="base") for _ in range(3)]
    assert [r.finish_reason for r in engine.generate(pages)] == ["length"] * 3
    assert calls[:4] == [16, 8, 4, 2]
    fits["views"] = 0  # not even one view fits: these pages fail, with the reason
    results = engine.generate(pages[:2])
    assert all(r.finish_reason == "error" and "vision encoder failed" in r.error for r in results)
    fits["views"] = 16
    assert engine.generate(pages[:1])[0].finish_reason == "length"  # the engine goes on
    engine.close()



def _beside_a_long_page(checkpoint, long_tokens: int, slow_call: int | None = None, **options):
    """An engine decoding a long page, its encoder calls recorded (their page counts; the
    `slow_call`-th sleeps 4 s), and a short page to submit."""
    import time

    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_new_tokens=4,
                                          suppress_eos=True, **options)
    encode, calls = engine.model.encode_images, []

    def encode_images(images, max_views_per_call=None):
        calls.append(len(images))
        if len(calls) == slow_call:
            time.sleep(4.0)
        return encode(images, max_views_per_call=max_views_per_call)

    engine.model.encode_images = encode_images
    page = PageRequest(Image.new("RGB", (300, 400), "white"), mode="base")
    long_page = engine.submit(PageRequest(page.image, mode="base", max_new_tokens=long_tokens))
    while engine.stats["decode_steps"] < 2:  # it decodes
        time.sleep(0.01)
    return engine, long_page, calls, page


@pytest.mark.slow
def test_pages_that_queued_for_the_encoder_are_admitted_as_one_group(checkpoint):
    """The wait for a group to admit counts from when pages became ready (encoded), not from
    when they were submitted, so pages that queued behind a slow encoder call are still
    prefilled together."""
    engine, long_page, calls, page = _beside_a_long_page(
        checkpoint, 1000, slow_call=2, max_batch_size=4, max_views_per_call=1, min_admit=3,
        admit_wait_s=3.0)  # the group's first call is slow: the others queue behind it
    group = [engine.submit(page) for _ in range(3)]
    assert [f.result(timeout=120).num_output_tokens for f in group] == [4, 4, 4]
    assert not long_page.done(), "the group waited for the long page"
    assert calls == [1, 1, 1, 1]  # one page a call
    assert engine.stats["admissions"] == 2  # the long page, then the three together
    assert long_page.result(timeout=120).num_output_tokens == 1000
    engine.close()


@pytest.mark.slow
def test_decode_steps_wait_for_a_group_on_its_way_in(checkpoint):
    """While a page decodes, a group of `min_admit` pages being prepared (slowly here: its
    images take 0.3 s to read) holds the next decode step, up to `fill_wait_s` after the
    last one: the long page takes hardly a step before the group joins it. With
    `fill_wait_s=0` it keeps stepping meanwhile, at a batch of one."""
    import time

    def steps_while_a_group_comes(fill_wait_s):
        engine, long_page, _, page = _beside_a_long_page(
            checkpoint, 1000, max_batch_size=4, max_views_per_call=3, min_admit=3,
            admit_wait_s=60, fill_wait_s=fill_wait_s)

        def slow_image():
            time.sleep(0.3)
            return page.image

        before = engine.stats["decode_steps"]
        group = [engine.submit(PageRequest(slow_image, mode="base")) for _ in range(3)]
        assert [f.result(timeout=120).num_output_tokens for f in group] == [4, 4, 4]
        taken = engine.stats["decode_steps"] - before
        assert not long_page.done()
        engine.close()
        return taken

    held = steps_while_a_group_comes(10.0)
    assert held <= 5, held  # the group's own 3 steps, and one or two around its encoding
    assert steps_while_a_group_comes(0.0) >= held + 10


@pytest.mark.slow
def test_pages_arriving_one_by_one_are_encoded_in_full_calls(checkpoint):
    """While a page decodes, pages that arrive one by one (a streaming Converter) wait for a
    full encoder call (`max_views_per_call` pages) while more are being prepared, instead of
    one small call each; a last page, with none on its way behind it, goes at once."""
    import time

    engine, long_page, calls, page = _beside_a_long_page(
        checkpoint, 1200, max_batch_size=8, max_views_per_call=3, min_admit=3, admit_wait_s=60)

    def slow_image():  # each page takes 0.25 s to read: the next is on its way meanwhile
        time.sleep(0.25)
        return page.image

    group = []
    for _ in range(3):
        group.append(engine.submit(PageRequest(slow_image, mode="base")))
        time.sleep(0.1)
    assert [f.result(timeout=120).num_output_tokens for f in group] == [4, 4, 4]
    assert calls == [1, 3]  # the long page, then the three arrivals in one call
    started = time.perf_counter()
    assert engine.submit(page).result(timeout=120).num_output_tokens == 4
    assert time.perf_counter() - started < 30  # not `admit_wait_s` (60 s) twice
    assert calls == [1, 3, 1] and not long_page.done()
    assert long_page.result(timeout=120).num_output_tokens == 1200
    engine.close()


def test_pages_are_encoded_without_an_autograd_graph(checkpoint):
    """The encoder runs outside the prefill: its activations must not be kept for autograd
    (on the GPU that ran the encoder out of memory beside the KV cache)."""
    import torch

    from core_model.engines.page_inputs import encode_ready, pixels_for
    from core_model.engines.sequence import Sequence

    engine = NativeEngine.from_pretrained(checkpoint, device="cpu", max_batch_size=2)
    engine.model.requires_grad_(True)  # a model made in code (benchmarks) keeps it so
    seq = Sequence(0, 4, prompt="<image>\nFree OCR.", mode="base")
    seq.image = pixels_for(engine.model.prepare_image, Image.new("RGB", (300, 400)), "base", False)
    assert torch.is_grad_enabled()  # as in the engine thread
    encode_ready(engine.model, engine.tokenizer, [seq], max_views_per_call=4)
    assert seq.vision_embeds is not None and seq.vision_embeds.grad_fn is None
    assert not seq.vision_embeds.requires_grad
    engine.close()
