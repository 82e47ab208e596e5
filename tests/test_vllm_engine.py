"""The vLLM engine: pure mapping functions and the generate path against a fake `vllm`.

Tests marked `vllm` need vllm importable (and DSOCR_MODEL_DIR for the end-to-end one);
they are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field

import pytest
import torch
from PIL import Image

from core_model.engines.interface import PageRequest
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import NoRepeatNGram
from core_model.engines.vllm_engine import (
    EOS_TEXT,
    IMAGE_TOKEN_ID,
    build_prompt_input,
    map_finish_reason,
    mode_processor_kwargs,
    ngram_extra_args,
    to_page_result,
)

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


def test_modes_map_to_processor_kwargs():
    assert mode_processor_kwargs("gundam") == {
        "base_size": 1024,
        "image_size": 640,
        "crop_mode": True,
    }
    assert mode_processor_kwargs("Tiny") == {
        "base_size": 512,
        "image_size": 512,
        "crop_mode": False,
    }
    assert mode_processor_kwargs("large")["base_size"] == 1280
    with pytest.raises(ValueError, match="known: tiny"):
        mode_processor_kwargs("huge")


def test_ngram_extra_args():
    assert ngram_extra_args(20, 50, (128821, 128822)) == {
        "ngram_size": 20,
        "window_size": 50,
        "whitelist_token_ids": [128821, 128822],
    }
    assert ngram_extra_args(None, 50, ()) is None


def test_build_prompt_input_converts_to_rgb_and_checks_placeholder():
    req = PageRequest(image=Image.new("L", (20, 10)), prompt="<image>\nFree OCR.", mode="base")
    inp = build_prompt_input(req)
    assert inp["prompt"] == "<image>\nFree OCR."
    assert inp["multi_modal_data"]["image"].mode == "RGB"
    assert inp["mm_processor_kwargs"]["image_size"] == 1024
    with pytest.raises(ValueError, match="placeholder"):
        build_prompt_input(PageRequest(image=Image.new("RGB", (4, 4)), prompt="Free OCR."))


def test_finish_reasons():
    assert [map_finish_reason(r) for r in ("stop", "length", "abort", None)] == [
        "eos",
        "length",
        "error",
        "error",
    ]


def test_to_page_result_counts_and_strips_eos_text():
    prompt = [0] + [IMAGE_TOKEN_ID] * 273 + [201, 202]
    out = FakeOutput(prompt, [FakeCompletion("# Title" + EOS_TEXT, [5, 6, 1], "stop")])
    res = to_page_result(out, key="p1", timings={"batch_generate": 0.5})
    assert res.text == "# Title"
    assert res.finish_reason == "eos" and res.error is None
    assert (res.num_vision_tokens, res.num_prompt_tokens, res.num_output_tokens) == (273, 276, 3)
    assert res.token_ids == [5, 6, 1] and res.key == "p1" and res.timings == {"batch_generate": 0.5}
    aborted = to_page_result(FakeOutput([0], [FakeCompletion("", [], "abort")]))
    assert aborted.finish_reason == "error" and "abort" in aborted.error


def test_length_with_a_looping_tail_is_reported_as_repetition():
    detector = LoopDetector(max_period=8, min_repeats=4, min_span_tokens=32)
    looping = list(range(100, 140)) + [7, 8, 9] * 30
    varied = list(range(100, 230))
    res = to_page_result(
        FakeOutput([0], [FakeCompletion("x", looping, "length")]), loop_detector=detector
    )
    assert res.finish_reason == "repetition"
    res = to_page_result(
        FakeOutput([0], [FakeCompletion("x", varied, "length")]), loop_detector=detector
    )
    assert res.finish_reason == "length"


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` package: records what the engine sends, answers canned outputs."""
    calls = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class LLM:
        def __init__(self, model, **kwargs):
            self.model, self.kwargs = model, kwargs

        def generate(self, inputs, params, use_tqdm=True):
            calls.append((inputs, params))
            if any(x["prompt"].endswith("BOOM") for x in inputs):
                raise ValueError("prompt too long")
            return [
                FakeOutput(
                    [0, IMAGE_TOKEN_ID, IMAGE_TOKEN_ID],
                    [FakeCompletion(x["prompt"][-3:], [9, 1], "stop")],
                )
                for x in inputs
            ]

    class NGramPerReqLogitsProcessor:
        pass

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    mod = types.ModuleType("vllm.model_executor.models.deepseek_ocr")
    mod.NGramPerReqLogitsProcessor = NGramPerReqLogitsProcessor
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.model_executor", types.ModuleType("vllm.model_executor"))
    monkeypatch.setitem(sys.modules, "vllm.model_executor.models", types.ModuleType("m"))
    monkeypatch.setitem(sys.modules, "vllm.model_executor.models.deepseek_ocr", mod)
    return calls, NGramPerReqLogitsProcessor


def test_engine_generate_with_fake_vllm(fake_vllm):
    from core_model.engines.vllm_engine import VllmEngine

    calls, ngram_cls = fake_vllm
    engine = VllmEngine("/models/dsocr", max_new_tokens=100, max_batch_size=8)
    assert engine.llm.kwargs["logits_processors"] == [ngram_cls]
    assert engine.llm.kwargs["enable_prefix_caching"] is False
    img = Image.new("RGB", (30, 40), "white")
    reqs = [
        PageRequest(image=img, prompt="<image>\nabc", key="a"),
        PageRequest(image=img, prompt="no placeholder", key="b"),
        PageRequest(image=img, prompt="<image>\nxyz", max_new_tokens=7, key="c"),
    ]
    seen = []
    results = engine.generate(reqs, on_token=lambda i, t, s: seen.append((i, t, s)))
    assert [r.key for r in results] == ["a", "b", "c"]
    assert [r.finish_reason for r in results] == ["eos", "error", "eos"]
    assert "page 1" in results[1].error and "placeholder" in results[1].error
    assert results[0].text == "abc" and results[0].num_vision_tokens == 2
    inputs, params = calls[0]
    assert [p.max_tokens for p in params] == [100, 7]
    assert params[0].temperature == 0.0 and params[0].skip_special_tokens is False
    assert params[0].extra_args == {
        "ngram_size": 20,
        "window_size": 50,
        "whitelist_token_ids": [128821, 128822],
    }
    assert seen == [(0, 1, "abc"), (2, 1, "xyz")]


def test_engine_isolates_a_page_that_breaks_the_batch(fake_vllm):
    from core_model.engines.vllm_engine import VllmEngine

    engine = VllmEngine("/models/dsocr")
    img = Image.new("RGB", (8, 8))
    results = engine.generate(
        [
            PageRequest(image=img, prompt="<image>\nok1"),
            PageRequest(image=img, prompt="<image>\nBOOM"),
        ]
    )
    assert [r.finish_reason for r in results] == ["eos", "error"]
    assert "page 1: vLLM failed" in results[1].error and "prompt too long" in results[1].error


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
    engine = VllmEngine(os.environ["DSOCR_MODEL_DIR"], max_new_tokens=256)
    (res,) = engine.generate([PageRequest(image=img, prompt="<image>\nFree OCR.", mode="base")])
    assert res.finish_reason == "eos", res
    assert "2025" in res.text
    assert res.num_vision_tokens > 0 and res.num_output_tokens == len(res.token_ids)
