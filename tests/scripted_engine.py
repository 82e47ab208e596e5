"""Scripted engines for pipeline tests: canned outputs per page and attempt, calls logged.

Pages are told apart by `image.info["page_id"]` (set by `make_page`). A script maps a page id
to the attempts in order: each an output text and a finish reason, or "error" for a page the
engine reports as failed. Pages without a script get `CLEAN` with "eos".

`ScriptedEngine` is batch-only (just `generate`, as engines were before `submit`): the
converter drives it through `as_streaming`. `StreamingEngine` has the streaming interface
itself: pages run on worker threads, each finishing after its own delay.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from core_model.engines.interface import EngineClosed, PageRequest, PageResult, generate_all
from loaders.page import LoadedPage, TextLayer, TextSpan

DATA = Path(__file__).parent / "data" / "pipeline"
CLEAN = (DATA / "056_issue75-en-title-only.txt").read_text()
TABLE_PAGE = (DATA / "002_odb-en-paper-table-image-multibox.txt").read_text()
TRUNCATED = (DATA / "040_rg-de-truncated-after-det-open.txt").read_text()


class ScriptedEngine:
    name = "scripted"

    def __init__(self, script=None, delay: float = 0.0, fail_calls: int = 0, **options):
        self.script = script or {}
        self.delay = delay
        self.fail_calls = fail_calls  # the first N generate calls raise
        self.options = options  # what a `module:attr` factory is given
        self.batches: list[list[tuple[str, str]]] = []  # (page id, mode) per call
        self.attempts: dict[str, int] = {}

    def generate(self, requests, *, on_token=None):
        self.batches.append([(_page_id(r), r.mode) for r in requests])
        if self.delay:
            time.sleep(self.delay * len(requests))
        if len(self.batches) <= self.fail_calls:
            raise RuntimeError("CUDA out of memory (scripted)")
        return [self._one(r) for r in requests]

    def _one(self, request: PageRequest) -> PageResult:
        page_id = _page_id(request)
        attempt = self.attempts.get(page_id, 0)
        self.attempts[page_id] = attempt + 1
        steps = self.script.get(page_id, [(CLEAN, "eos")])
        text, finish = steps[min(attempt, len(steps) - 1)]
        if finish == "error":
            return PageResult(text="", finish_reason="error", error=text, key=request.key)
        return PageResult(text=text, finish_reason=finish, num_vision_tokens=100,
                          num_output_tokens=len(text) // 4, timings={"decode": 0.01},
                          key=request.key)


class StreamingEngine(ScriptedEngine):
    """`submit` returns at once; `concurrency` worker threads each read one page at a time,
    sleeping its delay (`delays[page_id]`, else `delay`). Logs every request, the order pages
    finish in, and the most requests it ever held at once (`max_in_flight`)."""

    name = "streaming"

    def __init__(self, script=None, *, delay: float = 0.0, delays=None, concurrency: int = 4,
                 **options):
        super().__init__(script, **options)
        self.delay = delay
        self.delays = delays or {}
        self.concurrency = concurrency
        self.submitted: list[tuple[str, str, str]] = []  # (page id, mode, prompt) per request
        self.finished: list[str] = []  # page ids in the order they finished
        self.max_in_flight = 0  # requests submitted and not finished, at most
        self.docs_at_submit: list[set[str]] = []  # documents with requests held, per submit
        self.closed = False
        self._held: Counter[str] = Counter()  # requests held per document
        self._lock = threading.Lock()
        self._workers = ThreadPoolExecutor(concurrency, thread_name_prefix="streaming-engine")

    def submit(self, request: PageRequest, *, on_token=None) -> Future:
        if self.closed:
            raise EngineClosed(f"engine {self.name!r} is closed")
        future: Future = Future()
        with self._lock:
            self._held[_doc_of(request)] += 1
            self.max_in_flight = max(self.max_in_flight, self._held.total())
            self.submitted.append((_page_id(request), request.mode, request.prompt))
            self.docs_at_submit.append(set(+self._held))
        self._workers.submit(self._read, request, future)
        return future

    def generate(self, requests, *, on_token=None):
        return generate_all(self, requests)

    def close(self) -> None:
        self.closed = True

    def _read(self, request: PageRequest, future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            with self._lock:
                self._held[_doc_of(request)] -= 1
            return
        time.sleep(self.delays.get(_page_id(request), self.delay))
        with self._lock:
            result = None if self.closed else self._one(request)
            self._held[_doc_of(request)] -= 1  # before the result: the count is never stale
            self.finished.append(_page_id(request))
        if result is None:
            future.set_exception(EngineClosed(f"engine {self.name!r} is closed"))
        else:
            future.set_result(result)


def _doc_of(request: PageRequest) -> str:
    return _page_id(request).split("#")[0]


def _page_id(request: PageRequest) -> str:
    return request.image.info.get("page_id", f"untagged-{id(request.image)}")


def make_page(source: str, number: int, *, text: str | None = None, usable: bool = False,
              total: int | None = None) -> LoadedPage:
    """A 64x64 page image tagged `source#number`, with a one-span text layer if `text`."""
    image = Image.new("RGB", (64, 64), "white")
    image.info["page_id"] = f"{source}#{number}"
    layer = None
    if text is not None:
        layer = TextLayer(spans=[TextSpan(text=text, bbox=(72, 100, 300, 112), size=10)],
                          text=text, is_usable=usable)
    return LoadedPage(source=source, number=number, total_pages=total, image=image,
                      width_pt=612, height_pt=792, text_layer=layer)


def slow_engine(**options) -> ScriptedEngine:
    """A factory for `--engine tests.scripted_engine:slow_engine` (CLI kill-and-resume test)."""
    return ScriptedEngine(delay=0.4)


class MarkerEngine(ScriptedEngine):
    """Reports every page as an engine error while the file named by `model` exists (the
    switch survives processes: Ray replicas make their own engine from `module:attr`)."""

    name = "marker"

    def __init__(self, model: str, **options):
        super().__init__(**options)
        self.marker = Path(model)

    def _one(self, request: PageRequest) -> PageResult:
        if self.marker.exists():
            return PageResult(text="", finish_reason="error", error="device lost (scripted)",
                              key=request.key)
        return super()._one(request)


class DiesOnceEngine(ScriptedEngine):
    """Ends its process once, mid-run, as a killed worker would: when the process has been
    given `after` pages and the file named by `model` does not exist yet. It creates that
    file first, so the replica Ray restarts reads every page."""

    name = "dies-once"

    def __init__(self, model: str, after: int = 3, **options):
        super().__init__(**options)
        self.marker = Path(model)
        self.after = after
        self.pages_given = 0

    def generate(self, requests, *, on_token=None):
        import os

        self.pages_given += len(requests)
        if self.pages_given >= self.after and not self.marker.exists():
            self.marker.touch()
            os._exit(3)
        return super().generate(requests)


class BrokenResultsEngine(ScriptedEngine):
    """Returns None for every page: building the page raises out of the converter's loop."""

    name = "broken-results"

    def generate(self, requests, *, on_token=None):
        return [None] * len(requests)


class CrashingEngine(ScriptedEngine):
    """Ends its process when given any page, as a crash in native code would."""

    name = "crashing"

    def generate(self, requests, *, on_token=None):
        import os

        os._exit(3)
