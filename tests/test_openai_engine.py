"""The OpenAI-compatible engine against a stub server on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest

from core_model.engines.interface import PageRequest
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.openai_engine import OpenAIEngine, chat_text, iter_sse_data
from tests.openai_stub import BLUE, GREEN, RED, YELLOW, StubServer, page


@pytest.fixture(scope="module")
def server():
    with StubServer(slow_seconds=2.0) as srv:
        yield srv


def engine_for(server, **kwargs) -> OpenAIEngine:
    return OpenAIEngine(server.base_url, "dsocr", timeout=kwargs.pop("timeout", 5.0), **kwargs)


def test_prompt_placeholder_is_stripped():
    assert chat_text("<image>\n<|grounding|>Convert the document to markdown.") == (
        "<|grounding|>Convert the document to markdown."
    )
    assert chat_text("<image>Free OCR.") == "Free OCR."
    assert (
        chat_text("Locate <|ref|>x<|/ref|> in the image.")
        == "Locate <|ref|>x<|/ref|> in the image."
    )


def test_request_body_shape():
    engine = OpenAIEngine("http://h/v1/", "dsocr", max_new_tokens=99)
    body = engine.request_body(PageRequest(image=page(), prompt="<image>\nFree OCR.", mode="small"))
    assert engine.url == "http://h/v1/chat/completions"
    assert body["max_tokens"] == 99 and body["temperature"] == 0.0
    assert body["skip_special_tokens"] is False and body["stream"] is False
    assert body["vllm_xargs"] == {
        "ngram_size": 20,
        "window_size": 50,
        "whitelist_token_ids": [128821, 128822],
    }
    assert body["mm_processor_kwargs"] == {"base_size": 640, "image_size": 640, "crop_mode": False}
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "Free OCR."}
    bare = OpenAIEngine(
        "http://h/v1", "m", ngram_size=None, send_mode=False, extra_body={"top_k": 1}
    )
    body = bare.request_body(PageRequest(image=page()))
    assert "vllm_xargs" not in body and "mm_processor_kwargs" not in body and body["top_k"] == 1


def test_pages_come_back_in_order_with_counts(server):
    engine = engine_for(server, max_concurrency=3)
    reqs = [
        PageRequest(image=page(size=(60 + i, 40)), key=f"k{i}", max_new_tokens=50) for i in range(6)
    ]
    results = engine.generate(reqs)
    assert [r.text for r in results] == [f"page {60 + i}x40" for i in range(6)]
    assert [r.key for r in results] == [f"k{i}" for i in range(6)]
    first = results[0]
    assert first.finish_reason == "eos" and first.error is None
    assert (first.num_vision_tokens, first.num_prompt_tokens, first.num_output_tokens) == (5, 7, 2)
    assert first.token_ids == [1000, 1001]
    assert set(first.timings) == {"encode", "request"}
    assert server.bodies[-1]["max_tokens"] == 50


def test_one_failing_and_one_slow_page_do_not_spoil_the_others(server):
    engine = engine_for(server, timeout=0.5, max_concurrency=4)
    reqs = [
        PageRequest(image=page(), key="ok"),
        PageRequest(image=page(RED), key="boom"),
        PageRequest(image=page(BLUE), key="slow"),
        PageRequest(image=page(GREEN), key="long"),
    ]
    ok, boom, slow, long = engine.generate(reqs)
    assert ok.finish_reason == "eos" and ok.text == "page 64x48"
    assert (
        boom.finish_reason == "error" and "page 1 (boom)" in boom.error and "HTTP 500" in boom.error
    )
    assert slow.finish_reason == "error" and "timed out after 0.5 s" in slow.error
    assert long.finish_reason == "length" and long.error is None


def test_unreachable_server_is_an_error_per_page():
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "dsocr", timeout=2.0)
    (res,) = engine.generate([PageRequest(image=page())])
    assert res.finish_reason == "error" and "cannot reach" in res.error


def test_bad_mode_is_reported_for_that_page(server):
    engine = engine_for(server)
    good, bad = engine.generate([PageRequest(image=page()), PageRequest(image=page(), mode="huge")])
    assert good.finish_reason == "eos"
    assert bad.finish_reason == "error" and "unknown mode" in bad.error


def test_streaming_calls_back_each_delta(server):
    engine = engine_for(server, max_concurrency=2)
    seen: dict[int, list[str]] = {0: [], 1: []}
    threads = set()

    def on_token(i, token_id, delta):
        threads.add(threading.current_thread().name)
        seen[i].append(delta)

    results = engine.generate(
        [PageRequest(image=page(size=(10, 20))), PageRequest(image=page(size=(30, 40)))],
        on_token=on_token,
    )
    assert ["".join(seen[0]), "".join(seen[1])] == ["page 10x20", "page 30x40"]
    assert [r.text for r in results] == ["page 10x20", "page 30x40"]
    assert results[0].token_ids == [1000, 1001] and results[0].num_output_tokens == 2
    assert server.bodies[-1]["stream"] is True


def test_length_with_a_looping_tail_becomes_repetition():
    engine = OpenAIEngine(
        "http://h/v1", "m", loop_detector=LoopDetector(max_period=4, min_span_tokens=16)
    )
    looping = {
        "choices": [
            {"message": {"content": "a a a"}, "finish_reason": "length", "token_ids": [5] * 40}
        ]
    }
    assert engine._result_from_reply(looping).finish_reason == "repetition"


def test_sse_parser_stops_at_done():
    lines = [b": keep-alive\n", b'data: {"a": 1}\n', b"\n", b"data: [DONE]\n", b'data: {"b": 2}\n']
    assert list(iter_sse_data(iter(lines))) == [{"a": 1}]


def test_broken_replies_are_page_errors(server):
    engine = engine_for(server)
    ok, broken = engine.generate([PageRequest(image=page()), PageRequest(image=page(YELLOW))])
    assert ok.finish_reason == "eos"
    assert broken.finish_reason == "error" and "bad reply: JSONDecodeError" in broken.error
    deltas = []
    ok, broken = engine.generate(
        [PageRequest(image=page()), PageRequest(image=page(YELLOW))],
        on_token=lambda i, t, d: deltas.append((i, d)),
    )
    assert ok.text == "page 64x48" and (1, "par") in deltas
    assert broken.finish_reason == "error" and "engine died" in broken.error
