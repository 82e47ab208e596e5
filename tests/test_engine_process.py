"""The engine in a process of its own (`core_model.engines.engine_process`): same results as
in this process, pages failed (not lost, not hung) when the child dies, clear start errors."""

from __future__ import annotations

import os
import signal
import time

import pytest
from PIL import Image

from core_model.engines.engine_process import EngineProcess, EngineStartError, available
from core_model.engines.interface import EngineClosed, PageRequest
from dsocr_connectors.pipeline.engine_choice import EngineUnavailable, resolve_engine, wants_process

pytestmark = pytest.mark.skipif(not available(), reason="POSIX pipes")


def _page(page_id: str) -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    image.info["page_id"] = page_id
    return image


def test_native_engine_in_a_process_reads_as_in_this_one(tiny_checkpoint):
    from core_model.engines.native import NativeEngine

    image = Image.new("RGB", (300, 400), "white")
    options = dict(model=str(tiny_checkpoint), device="cpu", max_new_tokens=12, eager=True)
    with EngineProcess("native", **options) as engine:
        tokens: list[int] = []
        result = engine.submit(PageRequest(image=image, mode="tiny", key=("d", 3)),
                               on_token=lambda token, _: tokens.append(token)).result(timeout=60)
        assert engine.name == "native" and "tiny" in engine.supported_modes
        assert engine.get("stats")["decode_steps"] > 0
    here = NativeEngine.from_pretrained(tiny_checkpoint, device="cpu", max_new_tokens=12, eager=True)
    try:
        expected = here.submit(PageRequest(image=image, mode="tiny")).result()
    finally:
        here.close()
    assert result.key == ("d", 3)
    assert result.token_ids == expected.token_ids and result.token_ids == tokens


def test_a_killed_engine_process_fails_its_pages_and_later_submits():
    engine = EngineProcess("tests.scripted_engine:StreamingEngine", delay=30.0, concurrency=2)
    futures = [engine.submit(PageRequest(image=_page(f"a#{i}"))) for i in range(3)]
    os.kill(engine.pid, signal.SIGKILL)
    for future in futures:
        with pytest.raises(EngineClosed, match="SIGKILL"):
            future.result(timeout=30)
    with pytest.raises(EngineClosed):
        engine.submit(PageRequest(image=_page("a#9")))
    engine.close()


def test_close_fails_pages_not_done_and_ends_the_child():
    engine = EngineProcess("tests.scripted_engine:StreamingEngine", delay=10.0, concurrency=1)
    future = engine.submit(PageRequest(image=_page("a#1")))
    started = time.perf_counter()
    engine.close()
    assert engine._link.process.poll() is not None
    with pytest.raises(EngineClosed):
        future.result(timeout=5)
    assert time.perf_counter() - started < 8  # the child closed its engine; it was not waited for


def test_results_and_cancellation_cross_the_pipe():
    with EngineProcess("tests.scripted_engine:StreamingEngine", delays={"a#0": 1.0},
                       concurrency=1) as engine:
        slow = engine.submit(PageRequest(image=_page("a#0"), key=0))
        queued = engine.submit(PageRequest(image=_page("a#1"), key=1))
        assert queued.cancel()
        assert slow.result(timeout=30).key == 0
        assert engine.get("finished") == ["a#0"]  # the cancelled page was never read


def test_an_engine_that_cannot_load_says_why():
    with pytest.raises(EngineStartError, match="no checkpoint"):
        EngineProcess("native", model="/nonexistent/model", device="cpu")
    with pytest.raises(EngineUnavailable, match="no checkpoint"):
        resolve_engine(None, model="/nonexistent/model", device="cpu", process=True)


def test_the_native_engine_goes_in_its_own_process_on_cuda_only():
    assert wants_process(None, "native", "cuda:1")
    assert not wants_process(None, "native", "cpu")
    assert not wants_process(None, "vllm", "cuda")
    assert wants_process(True, "tests.scripted_engine:StreamingEngine", None)
    assert not wants_process(False, "native", "cuda")
