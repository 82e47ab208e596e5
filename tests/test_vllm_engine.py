"""The vLLM engine: the mapping functions, and the streaming engine against a stand-in `vllm`
(`tests/fake_vllm.py`, shaped like vLLM's `LLMEngine`).

Tests marked `vllm` need vllm importable (and DSOCR_MODEL_DIR for the end-to-end one);
they are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import pytest
import torch
from PIL import Image

from core_model.engines.interface import EngineClosed, PageRequest
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import NoRepeatNGram
from core_model.engines.vllm_engine import (
    EOS_TEXT,
    IMAGE_TOKEN_ID,
    UnsupportedMode,
    build_prompt_input,
    map_finish_reason,
    mode_processor_kwargs,
    ngram_extra_args,
    to_page_result,
)
from core_model.engines.vllm_protocol import version_warning
from tests import fake_vllm
from tests.fake_vllm import RequestOutputKind, page_image

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@dataclass
class FakeCompletion:
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class FakeOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion] = field(default_factory=list)


# -- mapping functions ----------------------------------------------------------------------


def test_modes_map_to_processor_kwargs():
    assert mode_processor_kwargs("gundam") == {"base_size": 1024, "image_size": 640, "crop_mode": True}
    assert mode_processor_kwargs("Tiny") == {"base_size": 512, "image_size": 512, "crop_mode": False}
    with pytest.raises(ValueError, match="known: tiny"):
        mode_processor_kwargs("huge")


def test_ngram_extra_args():
    assert ngram_extra_args(20, 50, (128821, 128822)) == {
        "ngram_size": 20, "window_size": 50, "whitelist_token_ids": [128821, 128822],
    }
    assert ngram_extra_args(None, 50, ()) is None


def test_build_prompt_input_prepares_the_image_and_checks_placeholder_and_mode():
    req = PageRequest(image=Image.new("L", (20, 10)), prompt="<image>\nFree OCR.")
    inp = build_prompt_input(req)
    assert inp["prompt"] == "<image>\nFree OCR."
    assert inp["multi_modal_data"]["image"].mode == "RGB"
    assert "mm_processor_kwargs" not in inp  # gundam is vLLM's default
    with pytest.raises(ValueError, match="placeholder"):
        build_prompt_input(PageRequest(image=page_image(), prompt="Free OCR."))
    with pytest.raises(UnsupportedMode, match="'base' mode.*native engine"):
        build_prompt_input(PageRequest(image=page_image(), mode="base"))


def test_finish_reasons():
    assert [map_finish_reason(r) for r in ("stop", "length", "abort", None)] == [
        "eos", "length", "error", "error",
    ]


def test_to_page_result_counts_and_strips_eos_text():
    prompt = [0] + [IMAGE_TOKEN_ID] * 273 + [201, 202]
    out = FakeOutput(prompt, [FakeCompletion("# Title" + EOS_TEXT, [5, 6, 1], "stop")])
    res = to_page_result(out, key="p1", timings={"generate": 0.5})
    assert res.text == "# Title" and res.finish_reason == "eos" and res.error is None
    assert (res.num_vision_tokens, res.num_prompt_tokens, res.num_output_tokens) == (273, 276, 3)
    assert res.token_ids == [5, 6, 1] and res.key == "p1" and res.timings == {"generate": 0.5}
    aborted = to_page_result(FakeOutput([0], [FakeCompletion("", [], "abort")]))
    assert aborted.finish_reason == "error" and "abort" in aborted.error


def test_length_with_a_looping_tail_is_reported_as_repetition():
    detector = LoopDetector(max_period=8, min_repeats=4, min_span_tokens=32)
    looping = list(range(100, 140)) + [7, 8, 9] * 30
    varied = list(range(100, 230))
    res = to_page_result(FakeOutput([0], [FakeCompletion("x", looping, "length")]),
                         loop_detector=detector)
    assert res.finish_reason == "repetition"
    res = to_page_result(FakeOutput([0], [FakeCompletion("x", varied, "length")]),
                         loop_detector=detector)
    assert res.finish_reason == "length"


def test_versions_outside_the_ones_read_are_flagged():
    assert version_warning("0.11.1") is None and version_warning("0.33.0") is None
    assert version_warning("0.20.0+cu128") is None
    assert "no DeepSeek-OCR support" in version_warning("0.11.0")
    assert "newer than the releases checked" in version_warning("0.34.0")


# -- the engine against the stand-in --------------------------------------------------------


@pytest.fixture
def vllm(monkeypatch):
    return fake_vllm.install(monkeypatch)


def make_engine(**kwargs):
    from core_model.engines.vllm_engine import VllmEngine

    return VllmEngine("/models/dsocr", **kwargs)


def ask(text: str = "", size=(64, 48), **kwargs) -> PageRequest:
    return PageRequest(image=page_image(size), prompt=f"<image>\nFree OCR.{text}", **kwargs)


def test_the_llm_is_built_as_the_vllm_recipe_says(vllm):
    with make_engine(max_new_tokens=100, max_batch_size=8, device="cuda") as engine:
        kwargs = engine.llm.kwargs
        assert kwargs["logits_processors"] == [fake_vllm.NGramPerReqLogitsProcessor]
        assert kwargs["enable_prefix_caching"] is False and kwargs["mm_processor_cache_gb"] == 0
        assert kwargs["max_num_seqs"] == 8 and engine.concurrency == 8
        assert engine.supported_modes == ("gundam",)


def test_pages_stream_through_and_finish_in_their_own_time(vllm):
    with make_engine(max_new_tokens=100) as engine:
        fake = engine.llm.llm_engine
        fake.step_delay, fake.gate = 0.005, threading.Event()
        slow = engine.submit(ask(" WAIT=30", key="slow"))
        quick = [engine.submit(ask(size=(60 + i, 40), key=i)) for i in range(40)]
        fake.gate.set()
        done_first = quick[0].result(timeout=10)
        assert not slow.done()  # no batch barrier: quick pages do not wait for the slow one
        results = [f.result(timeout=10) for f in quick]
        assert slow.result(timeout=10).text == "page 64x48 rgb(255,255,255)"
    assert fake.max_running == 41  # every pending page was handed to vLLM together
    assert done_first.key == 0 and done_first.finish_reason == "eos"
    assert [r.text for r in results] == [f"page {60 + i}x40 rgb(255,255,255)" for i in range(40)]
    first = results[0]
    assert first.num_vision_tokens == 273 and first.num_prompt_tokens == 1 + 10 + 273
    assert first.token_ids == [1000, 1001, 1002] and set(first.timings) == {"wait", "generate"}
    _, prompt, params = fake.added[0]
    assert params.temperature == 0.0 and params.skip_special_tokens is False
    assert params.max_tokens == 100 and params.output_kind == RequestOutputKind.FINAL_ONLY
    assert params.extra_args == {
        "ngram_size": 20, "window_size": 50, "whitelist_token_ids": [128821, 128822],
    }


def test_on_token_gets_each_steps_text(vllm):
    with make_engine() as engine:
        seen = []
        result = engine.submit(ask(), on_token=lambda t, d: seen.append((t, d))).result(timeout=10)
        params = engine.llm.llm_engine.added[0][2]
    assert params.output_kind == RequestOutputKind.DELTA
    assert seen == [(1000, "page"), (1001, " 64x48"), (1002, " rgb(255,255,255)")]
    assert result.text == "page 64x48 rgb(255,255,255)" and result.token_ids == [1000, 1001, 1002]


def test_a_bad_page_is_an_error_result_and_the_others_are_read(vllm):
    with make_engine() as engine:
        results = engine.generate([
            ask(key="a"), ask(" BOOM", key="b"), PageRequest(image=page_image(), prompt="no image"),
            ask(key="base", mode="base"), ask(key="c", max_new_tokens=7),
        ])
        added = engine.llm.llm_engine.added
    assert [r.key for r in results] == ["a", "b", None, "base", "c"]
    assert [r.finish_reason for r in results] == ["eos", "error", "error", "error", "eos"]
    assert "vLLM refused the page" in results[1].error and "prompt too long" in results[1].error
    assert "placeholder" in results[2].error
    assert "'base' mode" in results[3].error
    assert len(added) == 2 and added[1][2].max_tokens == 7  # refused pages never reach vLLM


def test_a_looping_page_that_hits_the_limit_is_repetition(vllm):
    detector = LoopDetector(max_period=4, min_span_tokens=16)
    with make_engine(loop_detector=detector) as engine:
        result = engine.submit(ask(" LOOP", max_new_tokens=40)).result(timeout=10)
    assert result.finish_reason == "repetition" and len(result.token_ids) == 40


def test_when_vllm_dies_every_page_in_it_raises_and_new_pages_are_refused(vllm):
    engine = make_engine()
    engine.llm.llm_engine.step_delay = 0.002
    futures = [engine.submit(ask(" WAIT=5")) for _ in range(3)] + [engine.submit(ask(" DIE"))]
    for future in futures:
        with pytest.raises(RuntimeError, match="EngineDeadError"):
            future.result(timeout=10)
    with pytest.raises(EngineClosed, match="failed"):
        engine.submit(ask())
    engine.close()


def test_close_aborts_what_runs_and_fails_its_futures(vllm):
    engine = make_engine()
    engine.llm.llm_engine.step_delay = 0.01
    futures = [engine.submit(ask(" WAIT=1000")) for _ in range(3)]
    time.sleep(0.1)
    engine.close()
    for future in futures:
        with pytest.raises(EngineClosed):
            future.result(timeout=5)
    assert len(engine.llm.llm_engine.aborted) == 3
    with pytest.raises(EngineClosed):
        engine.submit(ask())


def test_exif_rotated_and_transparent_pages_reach_vllm_upright_on_white(vllm):
    rotated = Image.new("RGB", (40, 20), "white")
    exif = rotated.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    rotated.save(buf, format="JPEG", exif=exif)
    rotated = Image.open(io.BytesIO(buf.getvalue()))
    clear = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    with make_engine() as engine:
        upright, white = engine.generate([PageRequest(image=rotated), PageRequest(image=clear)])
        sent = [p["multi_modal_data"]["image"] for _, p, _ in engine.llm.llm_engine.added]
    assert upright.text.startswith("page 20x40") and white.text == "page 30x30 rgb(255,255,255)"
    assert [(im.mode, im.size) for im in sent] == [("RGB", (20, 40)), ("RGB", (30, 30))]


def test_an_unchecked_vllm_version_is_logged(monkeypatch, caplog):
    fake_vllm.install(monkeypatch, version="0.40.0")
    with caplog.at_level(logging.WARNING), make_engine():
        pass
    assert "newer than the releases checked" in caplog.text


def test_a_callback_that_raises_fails_its_page_only(vllm):
    def explode(token_id, delta):
        raise KeyError("ui gone")

    with make_engine() as engine:
        bad = engine.submit(ask(" WAIT=2"), on_token=explode)
        good = engine.submit(ask())
        assert good.result(timeout=10).finish_reason == "eos"
        bad = bad.result(timeout=10)
    assert bad.finish_reason == "error" and "on_token callback failed" in bad.error


# -- real vLLM (skipped here) -----------------------------------------------------------------


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vllm not importable")
def test_our_windowed_rule_equals_vllms_processor():
    from vllm.model_executor.models.deepseek_ocr import NoRepeatNGramLogitsProcessor

    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        ids = torch.randint(0, 4, (60,), generator=gen).tolist()
        theirs = NoRepeatNGramLogitsProcessor(3, 20, {2})(ids, torch.zeros(8))
        ours = torch.zeros(1, 8)
        NoRepeatNGram(3, window=20, whitelist_ids=[2]).apply(
            ours, torch.tensor([ids]), torch.tensor([60])
        )
        assert torch.equal(torch.isneginf(theirs), torch.isneginf(ours[0]))


@pytest.mark.vllm
@pytest.mark.skipif(not HAS_VLLM, reason="vllm not importable")
@pytest.mark.skipif(not os.environ.get("DSOCR_MODEL_DIR"), reason="set DSOCR_MODEL_DIR")
def test_vllm_end_to_end_reads_a_rendered_page():
    from PIL import ImageDraw

    from core_model.engines.vllm_engine import VllmEngine

    img = Image.new("RGB", (800, 300), "white")
    ImageDraw.Draw(img).text((40, 120), "Hello DeepSeek OCR 2025", fill="black")
    with VllmEngine(os.environ["DSOCR_MODEL_DIR"], max_new_tokens=256) as engine:
        seen = []
        (res,) = engine.generate(
            [PageRequest(image=img, prompt="<image>\nFree OCR.")],
            on_token=lambda i, t, d: seen.append(d),
        )
    assert res.finish_reason == "eos", res
    assert "2025" in res.text and "".join(seen) == res.text
    assert res.num_vision_tokens == fake_vllm.upstream_placeholder_count(800, 300)
    assert res.num_output_tokens == len(res.token_ids)
