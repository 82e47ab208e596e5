"""`create_app(engine)`: the FastAPI app of `dsocr serve`, around one shared engine.

Routes: `POST /v1/chat/completions` and `GET /v1/models` (`chat.py`), `POST /v1/convert`
and `/v1/jobs/...` (`convert.py`), `GET /health`, `GET /metrics`. The engine is given as an
object, so a program (a benchmark, a test) can serve an engine it built itself; `dsocr
serve` (`cli/serve.py`) builds one from its flags and lets the app close it on shutdown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from dsocr_connectors.serve import chat, convert
from dsocr_connectors.serve.errors import error_response, install_error_handlers
from dsocr_connectors.serve.gate import EngineGate, QueueFull
from dsocr_connectors.serve.jobs import JobStore
from dsocr_connectors.serve.metrics import CONTENT_TYPE, Metrics
from dsocr_connectors.serve.middleware import ApiKey, BodyLimit, RequestMetrics
from dsocr_connectors.serve.options import ServeOptions


def create_app(engine: Any, options: ServeOptions | None = None, *,
               close_engine: bool = False) -> FastAPI:
    """The server's app around `engine` (any engine; a batch-only one is wrapped).

    Args:
        engine: the engine every request shares; a batch-only one is wrapped with
            `as_streaming` (wrap it yourself to choose its batch size).
        options: limits and defaults (`ServeOptions()` if None).
        close_engine: close the engine when the app shuts down.
    """
    options = options or ServeOptions()
    metrics = Metrics()
    gate = EngineGate(engine, max_queue=options.max_queue, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for job in app.state.jobs.all():
            job.engine.cancel("the server is shutting down")
        app.state.executor.shutdown(wait=False, cancel_futures=True)
        if close_engine:
            gate.close()

    app = FastAPI(
        title="dsocr serve", summary="DeepSeek-OCR behind an OpenAI-compatible API and a "
        "document converter", lifespan=lifespan,
        middleware=[
            Middleware(RequestMetrics, metrics=metrics),
            Middleware(ApiKey, key=options.api_key, metrics=metrics),
            Middleware(BodyLimit, max_bytes=options.max_upload_bytes, metrics=metrics),
        ],
    )
    app.state.options = options
    app.state.metrics = metrics
    app.state.gate = gate
    app.state.jobs = JobStore(options.max_jobs, options.job_ttl, metrics)
    app.state.executor = convert.make_executor(options)
    app.state.started = int(time.time())
    install_error_handlers(app)

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        metrics.rejected.labels("queue_full").inc()
        return error_response(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.get("/health")
    async def health() -> dict:
        """Liveness and load: the engine, pages pending, how many it works on at once."""
        return {"status": "ok", "engine": gate.name, "model": options.model_name,
                "queue_depth": gate.num_pending, "concurrency": gate.concurrency,
                "max_queue": options.max_queue}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text: pages, tokens, queue depth, latencies, refusals, jobs."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(chat.router)
    app.include_router(convert.router)
    return app
