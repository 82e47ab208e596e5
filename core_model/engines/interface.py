"""The engine interface: pages go in one at a time, results come back as each page finishes.

Every engine (the native PyTorch engine, vLLM, an OpenAI-compatible server) implements
`Engine.submit`, which takes one page and returns a `concurrent.futures.Future` at once. The
engine works on every submitted page it holds together (continuous batching) and completes
each future the moment its page is done, so a caller never waits for the slowest page of a
"batch": there are no batches at this level. `generate(list)` is a convenience on top
(`generate_all`). Callers keep about `concurrency` pages submitted to keep the engine full
and bound their own memory with a cap on pages in flight.

An engine never fails a future for one bad page: that page's result carries
`finish_reason="error"` and the message, and the other pages are unaffected. A future raises
only when the engine itself is closed or broken (`EngineClosed`, or the error that broke it).
A caller may `cancel()` a future that has not started; engines call
`set_running_or_notify_cancel()` before they start a page and drop it if it was cancelled.

Engines written against the older batch-only interface (a `generate` method and nothing
else) still work: `as_streaming` wraps them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

FinishReason = Literal["eos", "length", "repetition", "error"]

GROUNDING_MARKDOWN_PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
MODES = ("tiny", "small", "base", "large", "gundam")
DEFAULT_CONCURRENCY = 8  # for engines that do not say how many pages they work on at once


# A page image an engine reads where it prepares the page: a function that returns it (e.g.
# `loaders.PixelFile`, pixels a loading process left in a file). Only engines that say
# `lazy_images = True` are given one (`takes_lazy_images`); others get the image itself.
LazyImage = Callable[[], Image.Image]


@dataclass
class PageRequest:
    """One page to read. `key` is opaque to the engine and comes back on the result.
    `image` is a PIL image, or a `LazyImage` for an engine that takes them."""

    image: Image.Image | LazyImage
    prompt: str = GROUNDING_MARKDOWN_PROMPT
    mode: str = "gundam"
    max_new_tokens: int | None = None  # None: the engine's default
    key: Any = None


@dataclass
class PageResult:
    """What the engine produced for one page."""

    text: str  # decoded output, special tokens kept as text, EOS text not included
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason = "eos"
    num_vision_tokens: int = 0  # image positions in the prompt (newlines, separator included)
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds, by stage
    error: str | None = None
    key: Any = None


# Per request, called as on_token(token_id, text_delta) while the page decodes. It runs on
# the engine's own thread: keep it short (append to a list, put on a queue).
PageTokenCallback = Callable[[int, str], None]
# For `generate`: on_token(request_index, token_id, text_delta).
TokenCallback = Callable[[int, int, str], None]


class EngineClosed(RuntimeError):
    """The engine was closed; pages submitted to it are not read."""


@runtime_checkable
class Engine(Protocol):
    name: str
    concurrency: int  # pages worked on at once: keep at least this many submitted
    # Optional: `lazy_images = True` when `PageRequest.image` may be a `LazyImage`.

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        """Queue one page; the future completes when the page is done. Never blocks long."""
        ...

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page; results come back in the order of `requests`."""
        ...

    def close(self) -> None:
        """Stop working; futures not yet done raise `EngineClosed`."""
        ...


def generate_all(
    engine: Any, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
) -> list[PageResult]:
    """`Engine.generate` on top of `submit`: submit every page, then wait for each."""

    def per_request(index: int) -> PageTokenCallback | None:
        if on_token is None:
            return None
        return lambda token_id, delta: on_token(index, token_id, delta)

    futures = [engine.submit(r, on_token=per_request(i)) for i, r in enumerate(requests)]
    return [f.result() for f in futures]


def engine_concurrency(engine: Any) -> int:
    """How many pages to keep submitted to `engine` (its `concurrency`, else a default)."""
    value = getattr(engine, "concurrency", None)
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_CONCURRENCY


def takes_lazy_images(engine: Any) -> bool:
    """Whether `engine` reads a `LazyImage` as `PageRequest.image` (`lazy_images = True`)."""
    return getattr(engine, "lazy_images", False) is True


def error_result(request: PageRequest, message: str) -> PageResult:
    """The result of a page the engine could not read."""
    return PageResult(text="", finish_reason="error", error=message, key=request.key)


def as_streaming(engine: Any, *, max_batch_size: int | None = None) -> Any:
    """`engine` itself when it has `submit`, else a wrapper that gives a batch-only engine
    (one with just `generate`) the streaming interface: pages submitted while a call runs
    wait for the next call, which takes up to `max_batch_size` of them."""
    if callable(getattr(engine, "submit", None)):
        return engine
    return _BatchedEngine(engine, max_batch_size or engine_concurrency(engine))


class _BatchedEngine:
    """A batch-only engine behind `submit`: one worker thread calls `generate` on whatever
    is waiting (at most `max_batch_size` pages) and completes the futures."""

    def __init__(self, engine: Any, max_batch_size: int) -> None:
        self.engine = engine
        self.name = getattr(engine, "name", None) or type(engine).__name__
        self.concurrency = max_batch_size
        self._waiting: list[tuple[PageRequest, Future[PageResult]]] = []
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:  # options, stats... of the wrapped engine
        return getattr(self.engine, name)

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        future: Future[PageResult] = Future()
        with self._lock:
            if self._closed:
                raise EngineClosed(f"engine {self.name!r} is closed")
            self._waiting.append((request, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dsocr-batched", daemon=True)
                self._thread.start()
            self._lock.notify()
        return future

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        return generate_all(self, requests, on_token=on_token)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._lock.notify()
        for _, future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineClosed(f"engine {self.name!r} is closed"))
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                taken = self._waiting[: self.concurrency]
                del self._waiting[: self.concurrency]
            live = [(r, f) for r, f in taken if f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = list(self.engine.generate([r for r, _ in live]))
                if len(results) != len(live):
                    raise RuntimeError(
                        f"the engine returned {len(results)} results for {len(live)} pages"
                    )
            except Exception as exc:  # the whole call broke: every page of it carries the error
                message = f"{type(exc).__name__}: {exc}"
                results = [error_result(r, message) for r, _ in live]
            for (request, future), result in zip(live, results):
                if result is not None and result.key is None:
                    result.key = request.key
                future.set_result(result)
