"""The ASGI layers in front of the routes: request metrics, the API key, the body limit.

Plain ASGI (no per-request task or buffering), so streamed answers pass straight through.
The key and the size are checked before the body is read: a client without the key, or
announcing a body over the limit, is answered at once; a body without a length is counted
as it arrives and cut off (413) the moment it passes the limit.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from fastapi import HTTPException

from dsocr_connectors.serve.errors import error_body
from dsocr_connectors.serve.metrics import Metrics

Scope = dict[str, Any]


async def _answer(send: Any, status: int, message: str,
                  headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(status, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


class RequestMetrics:
    """Counts every answered request by route template and status, and its latency."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


class ApiKey:
    """Requires `Authorization: Bearer <key>` on `/v1/` routes (compared in constant time)."""

    def __init__(self, app: Any, key: str | None, metrics: Metrics) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode() if key else None
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (self.expected is None or scope["type"] != "http"
                or not scope["path"].startswith("/v1/")):
            return await self.app(scope, receive, send)
        given = _header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self.expected):
            self.metrics.rejected.labels("unauthorized").inc()
            return await _answer(send, 401, "missing or wrong API key (Authorization: Bearer ...)",
                                 {"WWW-Authenticate": "Bearer"})
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a length passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {_size(limit)} limit")


class BodyLimit:
    """Refuses request bodies over `max_bytes` (413), before reading them when it can."""

    def __init__(self, app: Any, max_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            self.metrics.rejected.labels("too_large").inc()
            return await _answer(send, 413, f"the request body ({_size(int(length))}) is over "
                                            f"the {_size(self.max_bytes)} limit",
                                 {"Connection": "close"})
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    self.metrics.rejected.labels("too_large").inc()
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"
