"""The OpenAI-compatible engine against a stub server process that misbehaves on command.

The stub (`tests/openai_stub.py`) runs as its own process on two loopback ports; commands in
a page's prompt text make it fail, drop, trickle, redirect or send bad JSON for that page.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import CancelledError

import pytest
from PIL import Image

from core_model.engines.interface import MODES, EngineClosed, PageRequest
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.openai_engine import OpenAIEngine, chat_text
from core_model.engines.openai_protocol import result_from_reply
from tests.openai_stub import StubServer, page


@pytest.fixture(scope="module")
def stub():
    with StubServer() as server:
        yield server


@pytest.fixture
def engine(stub):
    with OpenAIEngine(stub.base_url, "dsocr", timeout=5.0, backoff=0.01) as eng:
        yield eng


_ids = iter(range(10**6))


def req(commands: str = "", *, image=None, **kwargs) -> PageRequest:
    """A page whose prompt carries stub commands (with a fresh page id)."""
    text = f"<image>\nFree OCR. [[stub id=p{next(_ids)};{commands}]]"
    return PageRequest(image=image if image is not None else page(), prompt=text, **kwargs)


def read(engine, commands: str = "", **kwargs):
    return engine.submit(req(commands, **kwargs)).result(timeout=30)


# -- the request ------------------------------------------------------------------------------


def test_prompt_placeholder_is_stripped():
    assert chat_text("<image>\n<|grounding|>Convert the document to markdown.") == (
        "<|grounding|>Convert the document to markdown."
    )
    assert chat_text("<image>Free OCR.") == "Free OCR."


def test_request_body_for_vllm_and_for_a_server_that_honours_modes():
    engine = OpenAIEngine("http://h/v1/", "dsocr", max_new_tokens=99)
    body = engine.request_body(PageRequest(image=page(), prompt="<image>\nFree OCR."))
    assert engine.url == "http://h/v1/chat/completions"
    assert body["max_tokens"] == 99 and body["temperature"] == 0.0
    assert body["skip_special_tokens"] is False and body["stream"] is False
    assert body["vllm_xargs"] == {
        "ngram_size": 20, "window_size": 50, "whitelist_token_ids": [128821, 128822],
    }
    assert "mm_processor_kwargs" not in body  # vLLM: gundam is its default, nothing to send
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "Free OCR."}
    modes = OpenAIEngine("http://h/v1", "m", served_modes=MODES, ngram_size=None,
                         extra_body={"top_k": 1})
    body = modes.request_body(PageRequest(image=page(), mode="small"))
    assert body["mm_processor_kwargs"] == {"base_size": 640, "image_size": 640, "crop_mode": False}
    assert "vllm_xargs" not in body and body["top_k"] == 1


def test_sizing_arguments_from_the_pipeline_are_accepted():
    engine = OpenAIEngine("http://127.0.0.1:1/v1", "m", max_batch_size=8, device="cuda")
    assert engine.concurrency == 32


def test_the_key_never_goes_over_plain_http_to_another_machine(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="allow_insecure_key"):
        OpenAIEngine("http://10.0.0.7:8000/v1", "m", api_key="secret")
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    with pytest.raises(ValueError, match="plain http to gpu-box"):
        OpenAIEngine("http://gpu-box/v1", "m")
    OpenAIEngine("http://gpu-box/v1", "m", api_key="")  # no key: nothing to protect
    OpenAIEngine("http://10.0.0.7:8000/v1", "m", api_key="secret", allow_insecure_key=True)
    OpenAIEngine("https://gpu-box/v1", "m", api_key="secret")
    OpenAIEngine("http://localhost:8000/v1", "m", api_key="secret")
    OpenAIEngine("http://[::1]:8000/v1", "m", api_key="secret")


def test_base_url_is_required_and_checked(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="needs base_url"):
        OpenAIEngine()
    with pytest.raises(ValueError, match="http:// or https://"):
        OpenAIEngine("ftp://h/v1", "m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert OpenAIEngine().url == "http://127.0.0.1:8000/v1/chat/completions"


def test_length_with_a_looping_tail_becomes_repetition():
    looping = {"choices": [{"message": {"content": "a a a"}, "finish_reason": "length",
                            "token_ids": [5] * 40}]}
    detector = LoopDetector(max_period=4, min_span_tokens=16)
    assert result_from_reply(looping, detector).finish_reason == "repetition"


# -- against the stub server ------------------------------------------------------------------


def test_pages_come_back_with_counts_keys_and_timings(engine):
    result = read(engine, key="k1", image=page(size=(70, 40)), max_new_tokens=50)
    assert result.text == "page 70x40"
    assert result.key == "k1" and result.finish_reason == "eos" and result.error is None
    assert (result.num_vision_tokens, result.num_prompt_tokens, result.num_output_tokens) == (5, 7, 2)
    assert result.token_ids == [1000, 1001]
    assert set(result.timings) == {"encode", "request"}
    assert read(engine, "length").finish_reason == "length"


def test_64_pages_with_concurrency_32_all_answered_32_at_a_time_on_pooled_connections(stub):
    stub.reset()
    with OpenAIEngine(stub.base_url, "dsocr", timeout=10.0) as engine:
        assert engine.concurrency == 32
        futures = [engine.submit(req("gate=32", image=page(size=(100 + i, 50)), key=i))
                   for i in range(64)]
        results = [f.result(timeout=30) for f in futures]
    assert [r.key for r in results] == list(range(64))
    assert [r.text for r in results] == [f"page {100 + i}x50" for i in range(64)]
    stats = stub.stats()
    assert stats["max_in_flight"] == 32  # reached, never passed
    assert stats["connections"] <= 32 + 1  # one pool, connections reused (+1: this request)


def test_a_trickling_server_does_not_outlive_the_deadline(stub):
    with OpenAIEngine(stub.base_url, "dsocr", timeout=0.8) as engine:
        start = time.monotonic()
        result = read(engine, "trickle")
    assert time.monotonic() - start < 2.0
    assert result.finish_reason == "error"
    assert "no complete reply within 0.8 s" in result.error


def test_429_with_retry_after_then_success(engine):
    start = time.monotonic()
    result = read(engine, "fail=429;retry_after=1")
    assert result.finish_reason == "eos", result.error
    assert time.monotonic() - start >= 1.0  # the server's Retry-After was honoured


def test_503_twice_then_success_and_a_dropped_connection_then_success(engine):
    assert read(engine, "fail=503;times=2").finish_reason == "eos"
    assert read(engine, "drop").finish_reason == "eos"


def test_retries_are_bounded_and_4xx_is_not_retried(stub):
    with OpenAIEngine(stub.base_url, "dsocr", max_retries=2, backoff=0.01) as engine:
        busy = read(engine, "fail=503;times=9")
        bad = read(engine, "fail=400;times=9")
    assert busy.finish_reason == "error"
    assert "HTTP 503" in busy.error and "gave up after 3 attempts" in busy.error
    assert bad.finish_reason == "error" and "HTTP 400" in bad.error and "gave up" not in bad.error


def test_a_retry_after_past_the_deadline_fails_at_once(stub):
    with OpenAIEngine(stub.base_url, "dsocr", timeout=3.0) as engine:
        start = time.monotonic()
        result = read(engine, "fail=503;retry_after=60")
    assert time.monotonic() - start < 1.0
    assert "would pass the page's deadline" in result.error


def test_a_redirect_to_another_host_is_not_followed_and_the_key_stays_home(stub):
    stub.reset()
    target = f"{stub.other_root}/v1/chat/completions"
    with OpenAIEngine(stub.base_url, "dsocr", api_key="secret") as engine:
        result = read(engine, f"redirect={target}")
    assert result.finish_reason == "error" and "another host" in result.error
    stats = stub.stats()
    assert stub.other_port not in stats["requests"]  # the other host saw nothing
    assert stats["auth"] == ["Bearer secret"]


def test_a_same_origin_307_is_followed(engine, stub):
    result = read(engine, f"redirect={stub.base_url}/chat/completions")
    assert result.finish_reason == "eos", result.error


def test_bad_json_is_a_page_error_and_the_other_pages_are_fine(engine):
    broken, fine = engine.submit(req("badjson")), engine.submit(req())
    assert fine.result(timeout=10).finish_reason == "eos"
    broken = broken.result(timeout=10)
    assert broken.finish_reason == "error" and "bad reply: not JSON" in broken.error


def test_unreachable_server_is_an_error_per_page():
    with OpenAIEngine("http://127.0.0.1:9/v1", "dsocr", max_retries=1, backoff=0.01) as engine:
        result = engine.submit(PageRequest(image=page())).result(timeout=10)
    assert result.finish_reason == "error"
    assert "connection to http://127.0.0.1:9/v1/chat/completions failed" in result.error


def test_streaming_calls_back_each_delta_on_each_page(engine):
    seen: dict[int, list[str]] = {0: [], 1: []}
    results = engine.generate(
        [req(image=page(size=(10, 20))), req(image=page(size=(30, 40)))],
        on_token=lambda i, token_id, delta: seen[i].append(delta),
    )
    assert ["".join(seen[0]), "".join(seen[1])] == [r.text for r in results]
    assert results[0].text == "page 10x20"
    assert results[0].token_ids == [1000, 1001]
    assert results[0].num_vision_tokens == 5


def test_a_stream_that_breaks_is_a_page_error_after_the_deltas_it_sent(engine):
    deltas = []
    result = engine.submit(req("streamerror"), on_token=lambda t, d: deltas.append(d))
    result = result.result(timeout=10)
    assert deltas == ["page"]
    assert result.finish_reason == "error" and "engine died" in result.error


def test_the_served_model_is_asked_from_the_server(stub):
    with OpenAIEngine(stub.base_url, timeout=5.0) as engine:
        assert read(engine).finish_reason == "eos"
        assert engine.model == "dsocr"


def test_modes_vllm_cannot_serve_are_refused_before_sending(engine, stub):
    stub.reset()
    result = read(engine, mode="base")
    assert result.finish_reason == "error"
    assert "'base' mode" in result.error and "native engine" in result.error
    assert stub.stats()["requests"] == {}


def test_exif_rotated_and_transparent_pages_are_prepared_as_everywhere(engine):
    rotated = Image.new("RGB", (40, 20), "white")
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    rotated.save(buf, format="JPEG", exif=exif)
    rotated = Image.open(io.BytesIO(buf.getvalue()))
    clear = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    assert read(engine, "pixel", image=rotated).text.startswith("page 20x40 mode RGB")
    assert read(engine, "pixel", image=clear).text == "page 30x30 mode RGB rgb(255,255,255)"


def test_close_fails_pages_in_flight_and_refuses_new_ones(stub):
    engine = OpenAIEngine(stub.base_url, "dsocr", max_concurrency=1)
    slow = engine.submit(req("slow=2"))
    queued = engine.submit(req())
    time.sleep(0.2)
    closer = threading.Thread(target=engine.close)
    start = time.monotonic()
    closer.start()
    closer.join(timeout=5)
    assert time.monotonic() - start < 1.5
    for future in (slow, queued):
        with pytest.raises((EngineClosed, CancelledError)):
            future.result(timeout=1)
    with pytest.raises(EngineClosed):
        engine.submit(req())
    engine.close()  # idempotent


# -- from the pipeline and the CLI ------------------------------------------------------------


def test_dsocr_convert_with_the_openai_engine_writes_the_document(stub, tmp_path, capsys):
    from dsocr_connectors.cli import main

    scan = tmp_path / "scan.png"
    page(size=(300, 200)).save(scan)
    out = tmp_path / "out"
    code = main(["convert", str(scan), "-o", str(out), "--engine", "openai", "--base-url",
                 stub.base_url, "--served-model", "dsocr", "--api-key", "k", "-q"])
    assert code == 0, capsys.readouterr()
    assert "page 300x200" in (out / "scan.md").read_text()
    assert stub.stats()["auth"][-1] == "Bearer k"


def test_remote_flags_are_refused_with_another_engine(tmp_path, capsys):
    from dsocr_connectors.cli import main

    scan = tmp_path / "scan.png"
    page().save(scan)
    code = main(["convert", str(scan), "-o", str(tmp_path / "o"), "--base-url", "http://x/v1"])
    assert code == 1 and "--base-url: only for --engine openai" in capsys.readouterr().err


def test_converter_takes_the_engine_options(stub, tmp_path):
    from dsocr_connectors.pipeline import Converter

    scan = tmp_path / "scan.png"
    page(size=(320, 240)).save(scan)
    converter = Converter(engine="openai", engine_options={"base_url": stub.base_url},
                          ocr="always", max_in_flight=4)
    document = converter.convert(scan)
    assert converter.engine.model == "dsocr"  # asked from the server
    assert "page 320x240" in document.pages[0].to_markdown()
    assert document.pages[0].status == "ok"
