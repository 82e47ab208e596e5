"""The connectors' async methods: the conversion runs in one worker thread, the loop stays free.

`aload_data` / `alazy_load_data` (LlamaIndex) and `alazy_load` (LangChain) must never run
the conversion on the event loop (a ticker keeps ticking while pages convert), stream each
file as soon as it is done, stop the worker when the consumer stops, and keep many pages in
flight in the engine with one thread per call, not one per page.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pymupdf
import pytest
from connector_samples import StubConverter
from scripted_engine import StreamingEngine

pytest.importorskip("llama_index.core")
pytest.importorskip("langchain_core")

from dsocr_connectors.async_bridge import iterate_in_thread  # noqa: E402
from dsocr_connectors.langchain import DeepSeekOCRLoader  # noqa: E402
from dsocr_connectors.llama_index import DeepSeekOCRReader  # noqa: E402


class SlowConverter(StubConverter):
    """Blocks like a local model would (`time.sleep`), and notes the thread it runs in."""

    def __init__(self, seconds: float = 0.25) -> None:
        super().__init__()
        self.seconds = seconds
        self.threads: list[str] = []

    def convert(self, source, *, name=None):
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        return super().convert(source, name=name)


async def ticking(work, interval: float = 0.01):
    """Run `work` while counting how often the loop got to tick."""
    ticks = 0
    done = asyncio.Event()

    async def tick():
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(interval)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        return await work, ticks
    finally:
        done.set()
        await ticker


def test_reader_aload_data_keeps_the_loop_responsive():
    slow = SlowConverter()
    reader = DeepSeekOCRReader(converter=slow)
    docs, ticks = asyncio.run(ticking(reader.aload_data(["a.pdf", "b.pdf"])))
    assert len(docs) == 6 and slow.converted == ["a.pdf", "b.pdf"]
    assert ticks >= 20  # 0.5 s of conversion, a tick every 10 ms: the loop was never blocked
    assert slow.threads == ["dsocr-reader", "dsocr-reader"]  # one worker for the whole call


def test_reader_alazy_load_data_streams_and_awaits():
    slow = SlowConverter(0.1)
    reader = DeepSeekOCRReader(converter=slow)

    async def first_then_stop():
        async for doc in reader.alazy_load_data(["a.pdf", "b.pdf", "c.pdf"]):
            return doc, list(slow.converted)

    (doc, converted) = asyncio.run(first_then_stop())
    assert doc.metadata["source"] == "a.pdf" and converted[0] == "a.pdf"
    time.sleep(0.35)  # the worker stops after the file it is on: c.pdf is never converted
    assert "c.pdf" not in slow.converted
    listed = asyncio.run(_await(reader.alazy_load_data("x.pdf")))
    assert [d.metadata["page"] for d in listed] == [1, 2, 3]


async def _await(awaitable):
    return await awaitable


def test_loader_alazy_load_keeps_the_loop_responsive():
    slow = SlowConverter()
    loader = DeepSeekOCRLoader(["a.pdf", "b.pdf"], converter=slow)

    async def collect():
        return [doc async for doc in loader.alazy_load()]

    docs, ticks = asyncio.run(ticking(collect()))
    assert [d.metadata["page"] for d in docs] == [0, 1, 2, 0, 1, 2] and ticks >= 20
    assert slow.threads == ["dsocr-loader", "dsocr-loader"]


def test_errors_reach_the_consumer():
    def broken():
        yield 1
        raise RuntimeError("engine gone")

    async def collect():
        return [x async for x in iterate_in_thread(broken)]

    with pytest.raises(RuntimeError, match="engine gone"):
        asyncio.run(collect())


def test_many_pages_in_flight_with_one_thread_per_call(tmp_path):
    pdf = pymupdf.open()
    for _ in range(16):  # image-only pages: no text layer, so every page goes to the engine
        page = pdf.new_page(width=200, height=200)
        page.draw_rect(pymupdf.Rect(20, 20, 180, 180), color=(0, 0, 0), fill=(0.5, 0.5, 0.5))
    pdf.save(tmp_path / "scan.pdf")
    engine = StreamingEngine(delay=0.02, concurrency=8)  # a remote engine: 20 ms a page
    reader = DeepSeekOCRReader(engine=engine, max_in_flight=8, dpi=36, figures=None)
    before = threading.active_count()
    peak = before

    async def load():
        nonlocal peak
        count = 0
        async for _doc in reader.alazy_load_data(str(tmp_path / "scan.pdf")):
            count += 1
            peak = max(peak, threading.active_count())
        return count

    count, ticks = asyncio.run(ticking(load()))
    assert count == 16 and ticks > 0
    assert engine.max_in_flight == 8  # 8 pages in the engine at once
    # the worker, the page loader, its prefetch (the engine's own 8 readers aside): not one
    # thread per page
    assert peak - before - engine.concurrency <= 4
