"""`dsocr serve` as a real process (the streaming echo engine), with real HTTP clients: the
openai SDK, this project's OpenAI engine, `dsocr convert --engine openai`, httpx."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pymupdf
import pytest

from core_model.engines.interface import PageRequest
from core_model.engines.openai_engine import OpenAIEngine
from tests.serve_engine import RED, answer
from tests.serve_process import ROOT, ServeProcess, chat_body, data_url, png_bytes

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def server(uploads):
    args = ["--engine", "tests.serve_engine:echo", "--batch-size", "8", "--api-key", KEY,
            "--served-model-name", "dsocr", "--max-upload-mb", "1", "--sync-pages", "2",
            "--max-pages", "20", "--upload-dir", str(uploads)]
    with ServeProcess(args) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as c:
        yield c


def expected(size=(64, 64), text="Free OCR.", mode="gundam") -> str:
    from PIL import Image

    return answer(PageRequest(image=Image.new("RGB", size), prompt="<image>\n" + text, mode=mode))


def pdf_bytes(num_pages: int) -> bytes:
    """A PDF of blank pages without a text layer (so every page goes to the model)."""
    doc = pymupdf.open()
    for _ in range(num_pages):
        doc.new_page(width=200, height=300)
    return doc.tobytes()


def test_the_openai_sdk_gets_the_page_text_usage_and_finish_reason(client):
    reply = client.chat.completions.create(
        model="dsocr", max_tokens=200, temperature=0.0,
        messages=chat_body(data_url((70, 50)))["messages"])
    text = expected((70, 50))
    assert reply.choices[0].message.content == text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == len(text.split(" "))
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_deltas_add_up_to_the_plain_answer(client):
    stream = client.chat.completions.create(
        model="dsocr", stream=True, stream_options={"include_usage": True},
        messages=chat_body(data_url((80, 40)))["messages"])
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert "".join(deltas) == expected((80, 40))
    assert sum(1 for d in deltas if d) > 3  # token by token, not one block at the end
    assert finishes[-1] == "stop" and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == len(expected((80, 40)).split(" "))


def test_max_tokens_cuts_the_answer_with_finish_length(client):
    reply = client.chat.completions.create(
        model="dsocr", max_tokens=3, messages=chat_body(data_url())["messages"])
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].message.content == " ".join(expected().split(" ")[:3])


def test_the_projects_openai_engine_works_unchanged_against_it(server):
    from PIL import Image

    # The engine asks /v1/models which modes the server reads (vLLM: gundam only; here all).
    engine = OpenAIEngine(f"{server.url}/v1", "dsocr", api_key=KEY)
    pages = [PageRequest(image=Image.new("RGB", (90 + i, 60)), mode="base") for i in range(3)]
    plain = engine.generate(pages)
    streamed_text: dict[int, str] = {}
    streamed = engine.generate(pages, on_token=lambda i, _t, d: streamed_text.__setitem__(
        i, streamed_text.get(i, "") + d))
    for i, (a, b) in enumerate(zip(plain, streamed)):
        want = expected((90 + i, 60), "<|grounding|>Convert the document to markdown.", "base")
        assert a.error is None and a.text == want and a.finish_reason == "eos"
        assert b.text == want and streamed_text[i] == want
        assert a.token_ids == b.token_ids == list(range(1000, 1000 + len(want.split(" "))))


def test_32_concurrent_clients_each_get_their_own_answer(server, http):
    def ask(i: int) -> tuple[int, str]:
        body = chat_body(data_url((100 + i, 64)), stream=i % 2 == 1)
        reply = http.post("/v1/chat/completions", json=body)
        if body["stream"]:
            return reply.status_code, "".join(re.findall(r'"content": "([^"]*)"', reply.text))
        return reply.status_code, reply.json()["choices"][0]["message"]["content"]

    before = _metric(http, 'dsocr_pages_total{finish_reason="eos"}')
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(ask, range(32)))
    assert [status for status, _ in replies] == [200] * 32
    for i, (_, text) in enumerate(replies):
        assert text.replace("\\n", "\n") == expected((100 + i, 64))
    assert _metric(http, 'dsocr_pages_total{finish_reason="eos"}') == before + 32
    assert _metric(http, "dsocr_queue_depth") == 0


def test_dsocr_convert_with_the_openai_engine_end_to_end(server, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.pdf").write_bytes(pdf_bytes(2))
    (tmp_path / "in" / "photo.png").write_bytes(png_bytes((120, 90)))
    proc = subprocess.run(
        [sys.executable, "-m", "dsocr_connectors.cli", "convert", str(tmp_path / "in"), "-o",
         str(tmp_path / "out"), "--engine", "openai", "--base-url", f"{server.url}/v1",
         "--model", "dsocr", "--ocr", "always", "--mode", "small", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"OPENAI_API_KEY": KEY, "PATH": "", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    photo = (tmp_path / "out" / "photo.md").read_text()
    assert "page 120x90 in small" in photo
    scan = (tmp_path / "out" / "scan.md").read_text()
    assert scan.count("in small for") == 2  # both pages read by the served engine


def test_convert_returns_the_document_json_or_markdown(http):
    files = {"file": ("photo.png", png_bytes((64, 48)), "image/png")}
    reply = http.post("/v1/convert", files=files, data={"mode": "tiny"})
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["source"] == "photo.png" and reply.headers["x-dsocr-pages-failed"] == "0"
    (page,) = document["pages"]
    assert page["status"] == "ok" and page["mode"] == "tiny" and page["engine"] == "echo"
    assert "page 64x48 in tiny" in page["raw_output"]
    markdown = http.post("/v1/convert", files=files, headers={"Accept": "text/markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "page 64x48 in gundam" in markdown.text


def test_a_large_file_becomes_a_job_with_progress_and_a_result(http):
    files = {"file": ("long.pdf", pdf_bytes(3), "application/pdf")}
    reply = http.post("/v1/convert", files=files, data={"mode": "tiny", "pages": "1-3"})
    assert reply.status_code == 202, reply.text
    location = reply.headers["location"]
    assert location == f"/v1/jobs/{reply.json()['id']}"
    deadline = time.monotonic() + 30
    while (status := http.get(location).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "done"
    assert status["progress"] == {"pages_done": 3, "pages_total": 3}
    assert [p["number"] for p in status["document"]["pages"]] == [1, 2, 3]
    markdown = http.get(f"{location}/result", headers={"Accept": "text/markdown"})
    assert markdown.text.count("in tiny for") == 3
    assert http.delete(location).json()["deleted"] is True
    assert http.get(location).status_code == 404


def test_an_oversized_upload_is_refused_with_413_before_it_is_read(http):
    big = {"file": ("big.png", b"\x89PNG" + b"0" * (2 * 2**20), "image/png")}
    reply = http.post("/v1/convert", files=big)
    assert reply.status_code == 413 and "limit" in reply.json()["error"]["message"]

    def chunks():  # no Content-Length: cut off as it arrives
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
               b"Content-Type: image/png\r\n\r\n")
        for _ in range(40):
            yield b"x" * 65536
        yield b"\r\n--b--\r\n"

    reply = http.post("/v1/convert", content=chunks(),
                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert reply.status_code == 413, reply.text


def test_a_bad_file_is_a_4xx_naming_the_file(http, uploads):
    files = {"file": ("../../etc/report.pdf", b"%PDF-1.7 this is not a pdf", "application/pdf")}
    reply = http.post("/v1/convert", files=files)
    assert reply.status_code == 422
    message = reply.json()["error"]["message"]
    assert "report.pdf" in message and "etc" not in message
    reply = http.post("/v1/convert", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert reply.status_code == 422 and "notes.txt" in reply.json()["error"]["message"]
    assert list(uploads.iterdir()) == []  # every upload was deleted


def test_bad_fields_and_requests_are_400_saying_why(http):
    files = {"file": ("photo.png", png_bytes(), "image/png")}
    reply = http.post("/v1/convert", files=files, data={"mode": "huge"})
    assert reply.status_code == 400 and "mode='huge'" in reply.json()["error"]["message"]
    reply = http.post("/v1/convert", files=files, data={"engine": "x"})
    assert reply.status_code == 400 and "unknown field" in reply.json()["error"]["message"]
    reply = http.post("/v1/chat/completions",
                      json=chat_body("http://169.254.169.254/latest/meta-data/x.png"))
    assert reply.status_code == 400 and "fetches nothing" in reply.json()["error"]["message"]
    reply = http.post("/v1/chat/completions", json={**chat_body(data_url()), "model": "gpt-4o"})
    assert reply.status_code == 404 and "'dsocr'" in reply.json()["error"]["message"]


def test_a_page_the_engine_fails_is_a_500_with_its_message(client):
    with pytest.raises(openai.InternalServerError, match="red page"):
        client.chat.completions.create(
            model="dsocr", messages=chat_body(data_url(color=RED))["messages"])


def test_a_wrong_or_missing_key_is_401_and_health_stays_open(server):
    body = chat_body(data_url())
    wrong = httpx.post(f"{server.url}/v1/chat/completions", json=body,
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0
                      ).models.list()
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def test_models_and_metrics(client, http):
    assert [m.id for m in client.models.list()] == ["dsocr"]
    text = http.get("/metrics").text
    for name in ("dsocr_pages_total", "dsocr_output_tokens_total", "dsocr_queue_depth",
                 "dsocr_page_seconds_bucket", "dsocr_requests_total", "dsocr_rejected_total"):
        assert name in text
    assert _metric(http, 'dsocr_rejected_total{reason="unauthorized"}') >= 1


def _metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_the_async_connectors_read_through_the_server(server, tmp_path):
    """LlamaIndex `aload_data`/`alazy_load_data` and LangChain `alazy_load` with the OpenAI
    engine pointed at `dsocr serve`: every page of a scanned PDF comes back, in order, read
    by the server's engine, while the event loop stays free."""
    import asyncio

    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    from dsocr_connectors import DeepSeekOCRLoader, DeepSeekOCRReader

    scan = tmp_path / "scan.pdf"
    scan.write_bytes(pdf_bytes(3))
    options = {"engine": "openai", "model": "dsocr", "ocr": "always",
               "engine_options": {"base_url": f"{server.url}/v1", "api_key": KEY}}

    async def read() -> tuple[list, list, list, int]:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.create_task(tick())
        reader = DeepSeekOCRReader(figures=None, **options)
        pages = await reader.aload_data(str(scan))
        streamed = [doc async for doc in reader.alazy_load_data(str(scan))]
        chunks = [doc async for doc in DeepSeekOCRLoader(str(scan), **options).alazy_load()]
        stop.set()
        await ticker
        return pages, streamed, chunks, ticks

    pages, streamed, lc_pages, ticks = asyncio.run(read())
    for docs in (pages, streamed):
        assert [d.metadata["page"] for d in docs] == [1, 2, 3]
        assert all("in gundam for" in d.text for d in docs)  # the server's engine read them
    assert [d.metadata["page"] for d in lc_pages] == [0, 1, 2]  # LangChain pages are 0-based
    assert all("in gundam for" in d.page_content for d in lc_pages)
    assert ticks > 10  # the loop kept running while the pages were read
