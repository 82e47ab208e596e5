"""`dsocr serve --model DIR` with the native engine on a tiny random checkpoint (CPU): the
default engine loads, answers through the openai SDK, and streams what it answers plainly."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.serve_process import ServeProcess, chat_body, data_url, png_bytes

pytestmark = pytest.mark.slow  # a server process loading a checkpoint: about 8 s


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    args = ["--model", str(tiny_checkpoint), "--device", "cpu", "--batch-size", "4",
            "--max-new-tokens", "8", "--mode", "tiny", "--served-model-name", "dsocr"]
    with ServeProcess(args) as running:
        yield running


def test_the_native_engine_answers_and_streams_the_same_greedy_text(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    messages = chat_body(data_url((96, 64)))["messages"]
    plain = client.chat.completions.create(model="dsocr", messages=messages, max_tokens=6)
    assert plain.usage.completion_tokens <= 6 and plain.usage.prompt_tokens > 64
    assert plain.choices[0].finish_reason in ("stop", "length")
    stream = client.chat.completions.create(model="dsocr", messages=messages, max_tokens=6,
                                            stream=True)
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == \
        plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert httpx.get(f"{server.url}/health").json()["engine"] == "native"


def test_convert_reads_a_page_with_the_native_engine(server):
    reply = httpx.post(f"{server.url}/v1/convert", timeout=60, data={"mode": "tiny"},
                       files={"file": ("page.png", png_bytes((80, 100)), "image/png")})
    assert reply.status_code == 200, reply.text
    (page,) = reply.json()["pages"]
    assert page["engine"] == "native" and page["mode"] in ("tiny", "small", "base")
    assert page["num_output_tokens"] >= 1
