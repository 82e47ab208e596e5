"""`dsocr serve --model DIR`: the model behind an HTTP API (OpenAI-compatible chat
completions, document conversion, health, metrics), one engine shared by every client.

Needs the serve extra: pip install 'dsocr-connectors[serve]'. See docs/serve.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from core_model.engines.interface import MODES

log = logging.getLogger("dsocr.serve")

MODEL_ENV = "DSOCR_MODEL"
API_KEY_ENV = "DSOCR_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the model over HTTP (OpenAI-compatible API, /v1/convert)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    engine = p.add_argument_group("the engine")
    engine.add_argument("--model", metavar="DIR", help=f"model folder or id (default: ${MODEL_ENV}); with "
                        "--engine openai, the remote server's model name")
    engine.add_argument("--engine", metavar="NAME", help="native (default), vllm, openai or module:attr")
    engine.add_argument("--base-url", metavar="URL", help="--engine openai: the remote API root, "
                        "e.g. http://vllm:8000/v1")
    engine.add_argument("--device", metavar="DEV", help="cuda, cuda:1, cpu (default: the engine's choice)")
    engine.add_argument("--batch-size", type=int, metavar="N",
                        help="pages the engine works on at once (default: the engine's own: "
                        "the native engine sizes its slots from GPU memory, openai 32)")
    engine.add_argument("--max-new-tokens", type=int, metavar="N", help="default output limit per page")
    engine.add_argument("--served-model-name", metavar="NAME", help="the name /v1/models lists and requests "
                        "give (default: --model)")
    http = p.add_argument_group("the server")
    http.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (0.0.0.0: all)")
    http.add_argument("--port", type=int, default=8000)
    http.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY",
                      help=f"require 'Authorization: Bearer KEY' on /v1/ (default: ${API_KEY_ENV})")
    http.add_argument("--mode", default="gundam", choices=MODES,
                      help="resolution mode of chat requests that name none")
    http.add_argument("--log-level", default="info",
                      choices=("critical", "error", "warning", "info", "debug"))
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-upload-mb", type=float, default=100.0,
                        help="largest request body (413 past it; default 100)")
    limits.add_argument("--max-pages", type=int, default=500,
                        help="most pages one conversion may select (default 500)")
    limits.add_argument("--request-timeout", type=float, default=600.0,
                        help="seconds per synchronous request (504 past it; default 600)")
    limits.add_argument("--max-queue", type=int, default=256,
                        help="pages that may wait beyond the engine's batch (429 past it)")
    limits.add_argument("--conversion-pages", type=int, default=16, metavar="N",
                        help="pages one conversion keeps submitted to the engine (default 16)")
    limits.add_argument("--sync-pages", type=int, default=16,
                        help="conversions of more pages become jobs (202; default 16)")
    limits.add_argument("--max-jobs", type=int, default=16, help="jobs held at once")
    limits.add_argument("--job-ttl", type=float, default=3600.0,
                        help="seconds a finished job's result is kept (default 3600)")
    limits.add_argument("--upload-dir", metavar="DIR", help="where uploads are spooled (default: system temp)")
    p.set_defaults(func=run)


def build_engine(args: argparse.Namespace) -> Any:
    """The engine named by the flags, as a streaming engine.

    Raises:
        ValueError: no model or engine, or a missing --base-url.
        EngineUnavailable: the engine cannot be loaded.
    """
    from core_model.engines.interface import as_streaming
    from dsocr_connectors.pipeline.engine_choice import is_text_layer, resolve_engine

    model = args.model or os.environ.get(MODEL_ENV)
    if args.engine == "openai":
        if not args.base_url or not model:
            raise ValueError("--engine openai needs --base-url (e.g. http://vllm:8000/v1) and "
                             "--model (the remote server's model name)")
        from core_model.engines.registry import load_engine

        engine = load_engine("openai", base_url=args.base_url, model=model,
                             max_concurrency=args.batch_size or 32,
                             max_new_tokens=args.max_new_tokens)
    else:
        if args.engine is None and model is None:
            raise ValueError(f"no model: give --model DIR (or ${MODEL_ENV}), or --engine")
        sizing = {"max_batch_size": args.batch_size} if args.batch_size else None
        engine = resolve_engine(args.engine, model=model, device=args.device,
                                max_new_tokens=args.max_new_tokens, engine_options=sizing)
        if engine is None or is_text_layer(engine):
            raise ValueError("dsocr serve needs a model engine (not the text layer)")
    return as_streaming(engine, max_batch_size=args.batch_size)


def options_from(args: argparse.Namespace) -> Any:
    from dsocr_connectors.serve import ServeOptions

    for flag in ("batch_size", "max_pages", "max_queue", "max_jobs", "conversion_pages"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.max_upload_mb <= 0 or args.request_timeout <= 0:
        raise ValueError("--max-upload-mb and --request-timeout must be positive")
    model = args.model or os.environ.get(MODEL_ENV)
    return ServeOptions(
        model_name=args.served_model_name or model or "deepseek-ocr",
        api_key=args.api_key or None, mode=args.mode,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pages=args.max_pages,
        request_timeout=args.request_timeout, max_queue=args.max_queue,
        sync_pages=args.sync_pages, max_jobs=args.max_jobs, job_ttl=args.job_ttl,
        pages_per_conversion=args.conversion_pages, upload_dir=args.upload_dir,
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from dsocr_connectors.serve import create_app
    except ImportError as exc:
        return _fail(f"{exc.name or exc} is missing: pip install 'dsocr-connectors[serve]'")
    from dsocr_connectors.pipeline import EngineUnavailable

    try:
        options = options_from(args)
        engine = build_engine(args)
    except (ValueError, EngineUnavailable) as exc:
        return _fail(str(exc))
    app = create_app(engine, options, close_engine=True)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not options.api_key:
        log.warning("serving on %s without an API key (--api-key or $%s)", args.host,
                    API_KEY_ENV)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=10)
    return 0


def _fail(message: str) -> int:
    print(f"dsocr serve: error: {message}", file=sys.stderr)
    return 1
