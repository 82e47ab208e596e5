"""JSON over HTTP for the OpenAI-compatible engine: one pooled `httpx.AsyncClient` and the
rules of `http_policy.py` (retries with backoff, `Retry-After`, redirects kept to one origin,
the API key as a bearer header on every request and on nothing else).

Every call takes a `deadline` (the event loop's clock); the caller enforces it (the engine
wraps a whole page in `asyncio.wait_for`) and the retry loop never sleeps past it. A failure
that is final raises `RequestFailed` with a message fit for a page's error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from core_model.engines import http_policy

MAX_REPLY_BYTES = 32 * 1024 * 1024  # a page's reply is ~100 KB; beyond this it is not one
MAX_REDIRECTS = 3


class RequestFailed(Exception):
    """The request failed for the reason given (after the retries it was worth)."""


class _Retryable(Exception):
    """A hiccup (connection lost, 429, 503...): try again, after `retry_after` if given."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Redirect(Exception):
    def __init__(self, status: int, location: str):
        super().__init__(f"HTTP {status} to {location}")
        self.status, self.location = status, location


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after connection errors, 408, 429 and 5xx: at most `max_retries`, the first
    after about `backoff` s, doubling up to `max_backoff`, or when `Retry-After` says."""

    max_retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 20.0


# on_event(event) is called for each JSON event of a stream; it returns True once part of
# the reply has gone to the caller's code, after which the request is not retried.
EventHandler = Callable[[dict], bool]


class JsonClient:
    """JSON requests to one server. Create and use it inside one running event loop.

    Args:
        api_key: sent as `Authorization: Bearer` on every request (None: no header).
        max_connections: the connection pool's size.
        connect_timeout: seconds to open a connection.
        retry: the retry policy.
    """

    def __init__(
        self, *, api_key: str | None, max_connections: int, connect_timeout: float,
        retry: RetryPolicy,
    ) -> None:
        self.api_key = api_key
        self.retry = retry
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,  # http_policy decides
            trust_env=False,  # no proxy or .netrc credentials from the environment
        )

    async def get_json(self, url: str, deadline: float) -> Any:
        return await self._with_retries("GET", url, None, deadline, _read_json)

    async def post_json(self, url: str, body: bytes, deadline: float) -> Any:
        return await self._with_retries("POST", url, body, deadline, _read_json)

    async def post_events(
        self, url: str, body: bytes, deadline: float, on_event: EventHandler
    ) -> None:
        """POST, then pass each server-sent JSON event to `on_event` until `[DONE]`.

        Raises:
            RequestFailed: as for `post_json`; also a stream that breaks after part of it
                reached `on_event`'s caller (not retried) or carries an event that is not a
                JSON object.
        """

        async def read(resp: httpx.Response, state: dict) -> None:
            async for line in resp.aiter_lines():
                data = http_policy.sse_data(line)
                if data is None:
                    continue
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    raise RequestFailed(f"bad reply: an event that is not a JSON object: {data[:200]!r}")
                if on_event(event):
                    state["delivered"] = True
            raise _Retryable("the stream ended before [DONE]")

        await self._with_retries("POST", url, body, deadline, read)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _with_retries(
        self, method: str, url: str, body: bytes | None, deadline: float,
        read_reply: Callable[[httpx.Response, dict], Awaitable[Any]],
    ) -> Any:
        loop = asyncio.get_running_loop()
        state = {"delivered": False}
        retries = redirects = 0
        while True:
            try:
                return await self._once(method, url, body, read_reply, state)
            except _Redirect as moved:
                refusal = http_policy.redirect_refusal(moved.status, url, moved.location)
                if refusal is None and redirects >= MAX_REDIRECTS:
                    refusal = f"more than {MAX_REDIRECTS} redirects (last to {moved.location})"
                if refusal is not None:
                    raise RequestFailed(refusal) from None
                url, redirects = moved.location, redirects + 1
            except _Retryable as exc:
                if state["delivered"]:
                    raise RequestFailed(f"{exc} (after part of the page was streamed)") from exc
                if retries >= self.retry.max_retries:
                    tries = f"{retries + 1} attempt{'s' if retries else ''}"
                    raise RequestFailed(f"{exc} (gave up after {tries})") from exc
                wait = exc.retry_after
                if wait is None:
                    wait = http_policy.backoff_delay(
                        retries, base=self.retry.backoff, cap=self.retry.max_backoff
                    )
                if loop.time() + wait >= deadline:
                    raise RequestFailed(
                        f"{exc}; a retry after {wait:g} s would pass the page's deadline"
                    ) from exc
                retries += 1
                await asyncio.sleep(wait)

    async def _once(self, method, url, body, read_reply, state) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with self._client.stream(method, url, content=body, headers=headers) as resp:
                status = resp.status_code
                if status in http_policy.REDIRECTS:
                    raise _Redirect(status, urljoin(url, resp.headers.get("location", "")))
                if status >= 400:
                    detail = (await _read_capped(resp, 2000, cut=True)).decode("utf-8", "replace")
                    message = f"HTTP {status} {resp.reason_phrase} from {url}: {detail.strip()[:300]}"
                    if http_policy.is_retryable_status(status):
                        wait = http_policy.retry_after_seconds(resp.headers.get("retry-after"))
                        raise _Retryable(message, wait)
                    raise RequestFailed(message)
                return await read_reply(resp, state)
        except httpx.TransportError as exc:
            reason = str(exc) or "no detail"
            raise _Retryable(f"connection to {url} failed: {type(exc).__name__}: {reason}") from exc


async def _read_capped(resp: httpx.Response, limit: int, *, cut: bool = False) -> bytes:
    """The response body, at most `limit` bytes (beyond it: cut, or `RequestFailed`)."""
    data = bytearray()
    async for piece in resp.aiter_bytes():
        data += piece
        if len(data) > limit:
            if cut:
                return bytes(data[:limit])
            raise RequestFailed(f"bad reply: larger than {limit} bytes")
    return bytes(data)


async def _read_json(resp: httpx.Response, state: dict) -> Any:
    data = await _read_capped(resp, MAX_REPLY_BYTES)
    try:
        return json.loads(data)
    except ValueError:
        kind = resp.headers.get("content-type", "no content type")
        raise RequestFailed(f"bad reply: not JSON ({kind}): {data[:200]!r}") from None
