"""The one engine every request shares, and the door to it.

`EngineGate` holds the server's engine (wrapped with `as_streaming`, so a batch-only engine
works too) and counts the pages submitted and not yet finished: the queue depth. A request
asks `check_room()` first and is refused with `QueueFull` (HTTP 429) when more than
`max_queue` pages already wait beyond what the engine works on at once; then its pages go to
`submit`, which never blocks. Every finished page feeds the metrics.

`RequestEngine` is one conversion's view of the gate, handed to a `Converter` as its engine:
the same name, a concurrency of its own, and a `cancel()` that ends the request at once (timeout, job
cancelled): pages not yet started are withdrawn, and every page still owed, or submitted
later, gets an error result naming the reason (a future never raises for it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from core_model.engines.interface import (
    PageRequest,
    PageResult,
    PageTokenCallback,
    TokenCallback,
    as_streaming,
    engine_concurrency,
    error_result,
    generate_all,
)
from dsocr_connectors.serve.metrics import Metrics


class QueueFull(Exception):
    """Too many pages are waiting; `retry_after` is a guess in whole seconds."""

    def __init__(self, num_waiting: int, retry_after: int) -> None:
        super().__init__(f"{num_waiting} pages are waiting for the engine; retry in {retry_after} s")
        self.num_waiting = num_waiting
        self.retry_after = retry_after


class EngineGate:
    """The shared engine, its queue bound, and its page metrics.

    Args:
        engine: any engine (`submit`, or only `generate`: then wrapped by `as_streaming`).
        max_queue: pages allowed to wait beyond the engine's `concurrency`.
        metrics: where finished pages are counted.
    """

    def __init__(self, engine: Any, *, max_queue: int, metrics: Metrics) -> None:
        self.engine = as_streaming(engine)
        self.name: str = getattr(self.engine, "name", None) or type(self.engine).__name__
        self.concurrency = engine_concurrency(self.engine)
        self.max_queue = max_queue
        self.metrics = metrics
        self.num_pending = 0
        self._lock = threading.Lock()
        self._recent: list[float] = []  # finish times of the last pages, for Retry-After

    @property
    def num_waiting(self) -> int:
        """Pages submitted beyond what the engine works on at once."""
        return max(0, self.num_pending - self.concurrency)

    def check_room(self) -> None:
        """Raise `QueueFull` when `max_queue` pages already wait."""
        waiting = self.num_waiting
        if waiting >= self.max_queue:
            raise QueueFull(waiting, self.retry_after())

    def retry_after(self) -> int:
        """Seconds until the queue has room, from the recent page rate (1 to 60)."""
        with self._lock:
            recent = list(self._recent)
            excess = self.num_waiting - self.max_queue + 1
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 1
        rate = (len(recent) - 1) / (recent[-1] - recent[0])
        return min(60, max(1, math.ceil(excess / rate)))

    def submit(self, request: PageRequest, *,
               on_token: PageTokenCallback | None = None) -> Future[PageResult]:
        """Hand one page to the engine; the future completes with its result."""
        with self._lock:
            self.num_pending += 1
            self.metrics.queue_depth.set(self.num_pending)
        started = time.perf_counter()
        try:
            future = self.engine.submit(request, on_token=on_token)
        except BaseException:
            self._finished(None, started)
            raise
        future.add_done_callback(lambda f: self._finished(f, started))
        return future

    def _finished(self, future: Future[PageResult] | None, started: float) -> None:
        now = time.perf_counter()
        with self._lock:
            self.num_pending -= 1
            self.metrics.queue_depth.set(self.num_pending)
            self._recent.append(now)
            del self._recent[:-64]
        if future is None or future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        self.metrics.page_seconds.observe(now - started)
        self.metrics.pages.labels(result.finish_reason).inc()
        self.metrics.prompt_tokens.inc(result.num_prompt_tokens)
        self.metrics.output_tokens.inc(result.num_output_tokens)

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()


class RequestEngine:
    """One request's engine: submits through the gate; `cancel()` ends the request.

    Args:
        gate: the shared engine.
        concurrency: pages this request should keep submitted (None: the engine's), so one
            large conversion leaves room for the others.
    """

    def __init__(self, gate: EngineGate, concurrency: int | None = None) -> None:
        self.gate = gate
        self.name = gate.name
        self.concurrency = min(concurrency or gate.concurrency, gate.concurrency)
        self.cancelled: str | None = None  # the reason, once cancelled
        self._owed: dict[Future[PageResult], tuple[PageRequest, Future[PageResult]]] = {}
        self._lock = threading.Lock()

    def submit(self, request: PageRequest, *,
               on_token: PageTokenCallback | None = None) -> Future[PageResult]:
        outer: Future[PageResult] = Future()
        outer.set_running_or_notify_cancel()
        with self._lock:
            if self.cancelled is not None:
                outer.set_result(error_result(request, self.cancelled))
                return outer
            inner = self.gate.submit(request, on_token=on_token)
            self._owed[inner] = (request, outer)
        inner.add_done_callback(self._deliver)
        return outer

    def generate(self, requests: Sequence[PageRequest], *,
                 on_token: TokenCallback | None = None) -> list[PageResult]:
        return generate_all(self, requests, on_token=on_token)

    def cancel(self, reason: str) -> None:
        """Withdraw this request's pages; each page still owed gets an error saying `reason`."""
        with self._lock:
            self.cancelled = reason
            owed, self._owed = self._owed, {}
        for inner, (request, outer) in owed.items():
            inner.cancel()
            _settle(outer, error_result(request, reason))

    def _deliver(self, inner: Future[PageResult]) -> None:
        with self._lock:
            entry = self._owed.pop(inner, None)
        if entry is None:
            return  # cancelled: its outer future was settled then
        request, outer = entry
        if inner.cancelled():
            result = error_result(request, "the page was withdrawn")
        elif inner.exception() is not None:
            error = inner.exception()
            result = error_result(request, f"engine failed: {type(error).__name__}: {error}")
        else:
            result = inner.result()
        _settle(outer, result)


def _settle(future: Future[PageResult], result: PageResult) -> None:
    if not future.done():
        future.set_result(result)
