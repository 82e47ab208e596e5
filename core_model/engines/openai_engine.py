"""The OpenAI-compatible engine: pages sent to a server such as `vllm serve` over HTTP.

One chat completion per page (`openai_protocol.py`). Many pages are in flight at once
without a thread each: one asyncio loop on a background thread runs every request through
one pooled `httpx.AsyncClient` (`http_client.py`); `submit` hands a page to that loop and
returns a future at once, and at most `max_concurrency` requests run. Each page has one
overall deadline (`timeout`, retries included), retries on connection errors, 408, 429 and
5xx with backoff or after `Retry-After`, never follows a redirect to another host, and never
sends the API key over plain http to another machine unless told to (`http_policy.py`).
A page that fails gets finish_reason "error" and the reason; the other pages are not
affected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core_model.engines import http_policy
from core_model.engines.http_client import JsonClient, RequestFailed, RetryPolicy
from core_model.engines.interface import (
    MODES,
    EngineClosed,
    PageRequest,
    PageResult,
    PageTokenCallback,
    TokenCallback,
    error_result,
    generate_all,
)
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import TABLE_CELL_IDS, VLLM_NGRAM_SIZE, VLLM_WINDOW
from core_model.engines.openai_protocol import (
    StreamedReply,
    chat_request_body,
    chat_text,
    image_data_url,
    result_from_reply,
)
from core_model.engines.vllm_protocol import (
    DEFAULT_MAX_NEW_TOKENS,
    VLLM_MODES,
    check_mode,
    mode_processor_kwargs,
    ngram_extra_args,
)

log = logging.getLogger(__name__)

BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"

__all__ = ["OpenAIEngine", "chat_text", "image_data_url"]


class OpenAIEngine:
    """DeepSeek-OCR served behind an OpenAI-compatible chat completions endpoint.

    Args:
        base_url: the API root as for the OpenAI client, e.g. "http://localhost:8000/v1"
            (a full ".../chat/completions" URL is accepted too); default $OPENAI_BASE_URL.
        model: the served model name; None: the one model the server lists at /models.
        api_key: bearer token; default $OPENAI_API_KEY if set ("" sends none).
        timeout: seconds per page, from its start to its last byte, retries included.
        max_concurrency: requests in flight at once (also `concurrency`).
        max_new_tokens: default output limit per page.
        max_retries: retries after a connection error, 408, 429 or 5xx (0: none).
        backoff, max_backoff: the first retry waits about `backoff` s, doubling up to
            `max_backoff`; a `Retry-After` from the server is used instead.
        connect_timeout: seconds to open a connection.
        allow_insecure_key: send the key over plain http to another machine.
        served_modes: the resolution modes the server reads faithfully; pages in other modes
            are refused before they are sent. None: asked once from the server's /models
            (`dsocr serve` lists its engine's modes there); a server that lists none is taken
            for vLLM, which serves only gundam (see `vllm_protocol`). With more than gundam,
            every request carries its mode's `mm_processor_kwargs`.
        ngram_size, ngram_window, whitelist_ids: sent as `vllm_xargs` for vLLM's
            NGramPerReqLogitsProcessor (ngram_size=None: not sent).
        loop_detector: labels pages that ran to the limit in a loop "repetition" when the
            server returns token ids (None: the default detector).
        extra_body: more fields merged into every request body.
        image_format: "PNG" (lossless, default) or "JPEG" (quality 95: smaller and faster
            to encode for noisy scans, but not the pixels the other engines read).
        max_batch_size, device, dtype: accepted for a uniform call from the pipeline and
            unused (the server decides its batching and device).

    Raises:
        ValueError: no base_url, a bad URL, or a key that would go over plain http to
            another machine without `allow_insecure_key`.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_concurrency: int = 32,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        connect_timeout: float = 10.0,
        allow_insecure_key: bool = False,
        served_modes: Sequence[str] | None = None,
        ngram_size: int | None = VLLM_NGRAM_SIZE,
        ngram_window: int = VLLM_WINDOW,
        whitelist_ids: Sequence[int] = TABLE_CELL_IDS,
        loop_detector: LoopDetector | None = None,
        extra_body: dict[str, Any] | None = None,
        image_format: str = "PNG",
        max_batch_size: int | None = None,
        device: str | None = None,
        dtype: Any = None,
    ):
        del max_batch_size, device, dtype  # the server's business
        base_url = base_url or os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ValueError(
                f"the openai engine needs base_url (or ${BASE_URL_ENV}), "
                "e.g. http://localhost:8000/v1"
            )
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if image_format.upper() not in ("PNG", "JPEG", "JPG"):
            raise ValueError(f"image_format must be PNG or JPEG, not {image_format!r}")
        if timeout <= 0 or max_retries < 0:
            raise ValueError(f"need timeout > 0 and max_retries >= 0 ({timeout}, {max_retries})")
        self.base_url = http_policy.check_base_url(base_url)
        root = base_url.rstrip("/")
        if root.endswith("/chat/completions"):
            root = root[: -len("/chat/completions")]
        self.url = root + "/chat/completions"
        self.models_url = root + "/models"
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        http_policy.check_key_transport(
            self.url, has_key=bool(self.api_key), allow_insecure_key=allow_insecure_key
        )
        self.model = model
        self.timeout = float(timeout)
        self.max_concurrency = self.concurrency = int(max_concurrency)
        self.max_new_tokens = max_new_tokens
        self.retry = RetryPolicy(int(max_retries), float(backoff), float(max_backoff))
        self.connect_timeout = float(connect_timeout)
        self.supported_modes: tuple[str, ...] | None = None  # None: ask the server
        if served_modes is not None:
            self.supported_modes = tuple(m.lower() for m in served_modes)
            unknown = sorted(set(self.supported_modes) - set(MODES))
            if unknown:
                raise ValueError(f"unknown served_modes {unknown}; known: {', '.join(MODES)}")
        self.xargs = ngram_extra_args(ngram_size, ngram_window, whitelist_ids)
        self.loop_detector = loop_detector if loop_detector is not None else LoopDetector()
        self.extra_body = dict(extra_body or {})
        self.image_format = image_format
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: JsonClient | None = None
        self._tasks: set[asyncio.Task] = set()
        self._encoder: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._model_lock: asyncio.Lock | None = None

    # -- the request body ------------------------------------------------------------------

    def request_body(
        self, request: PageRequest, *, stream: bool = False, model: str | None = None
    ) -> dict[str, Any]:
        """The JSON body of one page's chat completion request.

        Raises:
            UnsupportedMode: a mode the server does not serve (`served_modes`).
            ValueError: an unknown mode, an image without pixels.
        """
        modes = self.supported_modes or VLLM_MODES
        mode = check_mode(request.mode, modes, engine="openai")
        return chat_request_body(
            request,
            model=model or self.model or "",
            max_tokens=request.max_new_tokens or self.max_new_tokens,
            stream=stream,
            xargs=self.xargs,
            mode_kwargs=mode_processor_kwargs(mode) if set(modes) != {"gundam"} else None,
            extra_body=self.extra_body,
            image_format=self.image_format,
        )

    # -- the Engine interface --------------------------------------------------------------

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        """Queue one page; the future completes when its reply is in (or it failed).

        With `on_token` the page is streamed and each text delta is passed as it arrives
        (on the engine's thread; token id -1 when the server sends no ids).

        Raises:
            EngineClosed: the engine was closed.
        """
        future: Future[PageResult] = Future()
        with self._lock:
            if self._closed:
                raise EngineClosed("the openai engine is closed")
            loop = self._start()
            loop.call_soon_threadsafe(self._start_page, request, future, on_token)
        return future

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page (up to `max_concurrency` at once); results in request order."""
        return generate_all(self, requests, on_token=on_token)

    def close(self) -> None:
        """Stop: requests in flight are cancelled and their futures raise `EngineClosed`;
        the connections are closed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        done.add_done_callback(lambda _: loop.call_soon_threadsafe(loop.stop))
        if threading.current_thread() is not thread:
            done.result()
            thread.join()
        if self._encoder is not None:
            self._encoder.shutdown(wait=False)

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop thread ---------------------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        """The loop thread, started on first use (called with `_lock` held)."""
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        self._encoder = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="dsocr-openai-encode"
        )
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop, ready), name="dsocr-openai", daemon=True
        )
        self._thread.start()
        ready.wait()
        self._loop = loop
        return loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._client = JsonClient(
                api_key=self.api_key, max_connections=self.max_concurrency,
                connect_timeout=self.connect_timeout, retry=self.retry,
            )
            self._slots = asyncio.Semaphore(self.max_concurrency)
            self._model_lock = asyncio.Lock()
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _start_page(
        self, request: PageRequest, future: Future, on_token: PageTokenCallback | None
    ) -> None:
        task = asyncio.ensure_future(self._page(request, future, on_token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _page(
        self, request: PageRequest, future: Future, on_token: PageTokenCallback | None
    ) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                if not future.set_running_or_notify_cancel():
                    return
                result = await self._read(request, on_token)
            future.set_result(result)
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(EngineClosed("the openai engine is closed"))
            raise
        except Exception as exc:  # a defect of ours: still a page error, never a lost page
            log.exception("openai engine: unexpected failure")
            if not future.done():
                future.set_result(error_result(request, f"unexpected {type(exc).__name__}: {exc}"))

    # -- one page ------------------------------------------------------------------------------

    async def _read(self, request: PageRequest, on_token: PageTokenCallback | None) -> PageResult:
        start = time.perf_counter()
        timings = {"encode": 0.0}
        try:
            deadline = asyncio.get_running_loop().time() + self.timeout
            if self.model is None or self.supported_modes is None:
                await self._ask_models(deadline)
            check_mode(request.mode, self.supported_modes or VLLM_MODES, engine="openai")
            result = await asyncio.wait_for(
                self._exchange(request, on_token, deadline, timings), timeout=self.timeout
            )
        except asyncio.TimeoutError:
            message = f"no complete reply within {self.timeout:g} s (retries included)"
            return error_result(request, message)
        except (RequestFailed, ValueError) as exc:
            return error_result(request, str(exc))
        result.key = request.key
        result.timings = {**timings, "request": time.perf_counter() - start - timings["encode"]}
        return result

    async def _exchange(
        self, request: PageRequest, on_token: PageTokenCallback | None, deadline: float,
        timings: dict[str, float],
    ) -> PageResult:
        assert self._client is not None
        model = self.model or ""
        started = time.perf_counter()
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                self._encoder, self._encode, request, on_token is not None, model
            )
        except (ValueError, TypeError, OSError) as exc:
            raise RequestFailed(f"cannot prepare the request: {exc}") from exc
        timings["encode"] = time.perf_counter() - started
        if on_token is None:
            reply = await self._client.post_json(self.url, body, deadline)
        else:
            stream = StreamedReply(on_token)
            await self._client.post_events(self.url, body, deadline, stream.on_event)
            reply = stream.reply()
        return result_from_reply(reply, self.loop_detector)

    def _encode(self, request: PageRequest, stream: bool, model: str) -> bytes:
        return json.dumps(self.request_body(request, stream=stream, model=model)).encode("utf-8")

    async def _ask_models(self, deadline: float) -> None:
        """What GET /models says, asked once: the model's name when none was given (the
        server must list one), and the modes it reads when `served_modes` was not given."""
        assert self._client is not None and self._model_lock is not None
        async with self._model_lock:
            if self.model is not None and self.supported_modes is not None:
                return
            try:
                listing = await self._client.get_json(self.models_url, deadline)
                entries = {str(entry["id"]): entry for entry in listing["data"]}
            except (RequestFailed, KeyError, TypeError, AttributeError) as exc:
                if self.model is None:
                    raise RequestFailed(f"cannot list the models at {self.models_url}: {exc}") from exc
                log.warning("openai engine: %s lists no modes (%s); assuming a vLLM server "
                            "(gundam only)", self.models_url, exc)
                self.supported_modes = tuple(VLLM_MODES)
                return
            if self.model is None:
                if len(entries) != 1:
                    raise RequestFailed(
                        f"the server at {self.base_url} serves {len(entries)} models "
                        f"({', '.join(entries) or 'none'}): say which (model=..., --served-model)"
                    )
                self.model = next(iter(entries))
            if self.supported_modes is None:
                listed = entries.get(self.model, {}).get("modes")
                known = [m for m in listed or () if isinstance(m, str) and m in MODES]
                self.supported_modes = tuple(known) or tuple(VLLM_MODES)
