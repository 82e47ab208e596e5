"""`dsocr serve` limits on a real process with a slow engine: a full queue is 429 with
Retry-After, a request past its time is 504 and its pages are withdrawn."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve_engine import BLUE
from tests.serve_process import ServeProcess, chat_body, data_url, png_bytes


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def server(uploads):
    # 2 pages at once, 0.3 s each; 3 more may wait; 1 s per request.
    args = ["--engine", "tests.serve_engine:slow_echo", "--batch-size", "2", "--max-queue", "3",
            "--request-timeout", "1", "--served-model-name", "dsocr", "--upload-dir",
            str(uploads)]
    with ServeProcess(args) as running:
        yield running


def _wait_for_depth(url: str, depth: int) -> None:
    deadline = time.monotonic() + 5
    while httpx.get(f"{url}/health").json()["queue_depth"] < depth:
        assert time.monotonic() < deadline, "the pages never reached the engine"
        time.sleep(0.01)


def test_a_full_queue_is_429_with_retry_after_and_nothing_queued_is_lost(server):
    url = f"{server.url}/v1/chat/completions"
    with ThreadPoolExecutor(5) as pool:
        queued = [pool.submit(httpx.post, url, json=chat_body(data_url((64 + i, 64))),
                              timeout=10) for i in range(5)]  # 2 in the engine, 3 waiting
        _wait_for_depth(server.url, 5)
        refused = httpx.post(url, json=chat_body(data_url()))
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "waiting" in refused.json()["error"]["message"]
        replies = [f.result() for f in queued]
    assert [r.status_code for r in replies] == [200] * 5
    for i, reply in enumerate(replies):
        assert f"page {64 + i}x64" in reply.json()["choices"][0]["message"]["content"]


def test_a_request_past_its_time_is_504_and_its_waiting_page_is_withdrawn(server):
    url = f"{server.url}/v1/chat/completions"
    with ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(httpx.post, url, json=chat_body(data_url(color=BLUE)), timeout=10)
                for _ in range(2)]  # both engine workers busy for 1.3 s
        _wait_for_depth(server.url, 2)
        started = time.monotonic()
        late = httpx.post(url, json=chat_body(data_url()), timeout=10)
        assert late.status_code == 504 and "1 s" in late.json()["error"]["message"]
        assert time.monotonic() - started < 1.8
        assert httpx.get(f"{server.url}/health").json()["queue_depth"] == 2  # withdrawn
        assert [f.result().status_code for f in slow] == [504, 504]


def test_a_conversion_past_its_time_is_504_and_its_upload_is_deleted(server, uploads):
    files = {"file": ("scan.png", png_bytes(color=BLUE), "image/png")}
    reply = httpx.post(f"{server.url}/v1/convert", files=files, timeout=10)
    assert reply.status_code == 504 and "scan.png" in reply.json()["error"]["message"]
    deadline = time.monotonic() + 5
    while list(uploads.iterdir()):
        assert time.monotonic() < deadline, "the upload was not deleted"
        time.sleep(0.05)
