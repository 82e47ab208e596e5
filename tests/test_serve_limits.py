"""`dsocr serve` limits on a real process whose engine holds blue pages while a file exists:
a full queue is 429 with Retry-After and loses nothing queued; a request past its time is 504
and its waiting page is withdrawn; a conversion past its time deletes its upload."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve_engine import BLUE
from tests.serve_process import ServeProcess, chat_body, data_url, png_bytes


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    (folder / "uploads").mkdir()
    return folder


@pytest.fixture(scope="module")
def server(workdir):
    # 2 pages at once; 3 more may wait; 1.5 s per request; blue pages held by the file.
    args = ["--engine", "tests.serve_engine:held_echo", "--model", str(workdir / "hold"),
            "--batch-size", "2", "--max-queue", "3", "--request-timeout", "1.5",
            "--served-model-name", "dsocr", "--upload-dir", str(workdir / "uploads")]
    with ServeProcess(args) as running:
        yield running


@pytest.fixture
def hold(workdir):
    """While in the test, blue pages stay in the engine; released at the end."""
    marker = workdir / "hold"
    marker.touch()
    yield marker
    marker.unlink(missing_ok=True)


def _wait(url: str, *, depth: int, at_least: bool = True) -> None:
    deadline = time.monotonic() + 10
    while True:
        now = httpx.get(f"{url}/health").json()["queue_depth"]
        if (now >= depth) if at_least else (now <= depth):
            return
        assert time.monotonic() < deadline, f"queue depth stayed at {now}"
        time.sleep(0.01)


def _pages_read(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('dsocr_pages_total{finish_reason="eos"} '):
            return float(line.split()[-1])
    return 0.0


def test_a_full_queue_is_429_with_retry_after_and_nothing_queued_is_lost(server, hold):
    url = f"{server.url}/v1/chat/completions"
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(httpx.post, url, json=chat_body(data_url(color=BLUE)), timeout=10)
                for _ in range(2)]
        _wait(server.url, depth=2)  # both engine workers taken
        queued = [pool.submit(httpx.post, url, json=chat_body(data_url((64 + i, 64))),
                              timeout=10) for i in range(3)]
        _wait(server.url, depth=5)
        refused = httpx.post(url, json=chat_body(data_url()))
        hold.unlink()
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "waiting" in refused.json()["error"]["message"]
        replies = [f.result() for f in held + queued]
    assert [r.status_code for r in replies] == [200] * 5
    for i, reply in enumerate(replies[2:]):
        assert f"page {64 + i}x64" in reply.json()["choices"][0]["message"]["content"]


def test_a_request_past_its_time_is_504_and_its_waiting_page_is_withdrawn(server, hold):
    url = f"{server.url}/v1/chat/completions"
    before = _pages_read(server.url)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(httpx.post, url, json=chat_body(data_url(color=BLUE)), timeout=10)
                for _ in range(2)]
        _wait(server.url, depth=2)
        late = httpx.post(url, json=chat_body(data_url()), timeout=10)  # waits behind them
        assert late.status_code == 504 and "1.5 s" in late.json()["error"]["message"]
        assert [f.result().status_code for f in held] == [504, 504]
    hold.unlink()
    _wait(server.url, depth=0, at_least=False)
    assert _pages_read(server.url) == before + 2  # the blue pages; the late one never ran


def test_a_conversion_past_its_time_is_504_and_its_upload_is_deleted(server, hold, workdir):
    files = {"file": ("scan.png", png_bytes(color=BLUE), "image/png")}
    reply = httpx.post(f"{server.url}/v1/convert", files=files, timeout=10)
    assert reply.status_code == 504 and "scan.png" in reply.json()["error"]["message"]
    hold.unlink()
    deadline = time.monotonic() + 10
    while list((workdir / "uploads").iterdir()):
        assert time.monotonic() < deadline, "the upload was not deleted"
        time.sleep(0.05)
