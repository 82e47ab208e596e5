"""The child side of `engine_process.py`: one engine, served over two pipes.

Run as `python -m core_model.engines.engine_server READ_FD WRITE_FD`. The first request is
("load", engine, options), answered ("ready", info) or ("failed", message). Then, until
("close",) or the request pipe closes:
- ("submit", id, PageRequest, wants_tokens) -> ("done", id, PageResult), or ("raised", id,
  error type, message) when the engine refuses or fails the page; ("token", id, token id,
  text) on the way when asked;
- ("cancel", id): the page is dropped if it has not started;
- ("get", id, name, _) / ("set", id, name, value): an attribute of the engine, dotted names
  allowed (its `stats`, "config.min_admit") -> ("answer", id, ok, value or message).

The main thread reads requests; replies are written by a thread of their own, so that the
engine's thread, which completes the futures, never waits on the pipe.
"""

from __future__ import annotations

import importlib
import os
import queue
import signal
import sys
import threading
from concurrent.futures import CancelledError, Future
from multiprocessing.connection import Connection
from typing import Any

from core_model.engines.interface import as_streaming, engine_concurrency, takes_lazy_images
from core_model.page_image import load_page_image


def make_engine(spec: str, options: dict[str, Any]) -> Any:
    """A registered engine by name, or a "module:attr" factory (or engine object)."""
    if ":" not in spec:
        from core_model.engines.registry import load_engine

        return load_engine(spec, **options)
    module, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    if isinstance(target, type) or not hasattr(target, "generate"):
        target = target(**options)
    return target


def info_of(engine: Any) -> dict[str, Any]:
    modes = getattr(engine, "supported_modes", None)
    return {"name": getattr(engine, "name", None) or type(engine).__name__,
            "concurrency": engine_concurrency(engine),
            "lazy_images": takes_lazy_images(engine),
            "supported_modes": None if modes is None else tuple(modes)}


def serve(read_fd: int, write_fd: int) -> None:
    requests = Connection(read_fd, writable=False)
    replies = Connection(write_fd, readable=False)
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(outbox, replies), name="dsocr-engine-send")
    sender.start()
    engine = None
    try:
        engine = _load(requests, outbox)
        if engine is not None:
            _serve_requests(engine, requests, outbox)
    finally:
        if engine is not None:
            engine.close()  # pages not done fail: their "raised" go out before the end
        outbox.put(None)
        sender.join()


def _load(requests: Connection, outbox: queue.SimpleQueue) -> Any:
    try:
        _, spec, options = requests.recv()
    except (EOFError, OSError):
        return None
    try:
        raw = make_engine(spec, options)
        engine = as_streaming(raw)
        outbox.put(("ready", info_of(raw)))
        return engine
    except Exception as exc:
        outbox.put(("failed", f"{type(exc).__name__}: {exc}"))
        return None


def _serve_requests(engine: Any, requests: Connection, outbox: queue.SimpleQueue) -> None:
    lazy = takes_lazy_images(engine)
    futures: dict[int, Future] = {}
    lock = threading.Lock()

    def finished(page_id: int, future: Future) -> None:  # on the engine's thread
        with lock:
            futures.pop(page_id, None)
        try:
            outbox.put(("done", page_id, future.result()))
        except CancelledError:
            pass
        except Exception as exc:
            outbox.put(("raised", page_id, type(exc).__name__, str(exc)))

    while True:
        try:
            message = requests.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "close":
            return
        if kind == "submit":
            _, page_id, request, wants_tokens = message
            on_token = None
            if wants_tokens:
                def on_token(token_id: int, delta: str, page_id: int = page_id) -> None:
                    outbox.put(("token", page_id, token_id, delta))
            try:
                if not lazy:
                    request.image = load_page_image(request.image)
                future = engine.submit(request, on_token=on_token)
            except Exception as exc:
                outbox.put(("raised", page_id, type(exc).__name__, str(exc)))
                continue
            with lock:
                futures[page_id] = future
            future.add_done_callback(lambda f, page_id=page_id: finished(page_id, f))
        elif kind == "cancel":
            with lock:
                future = futures.get(message[1])
            if future is not None:
                future.cancel()
        elif kind in ("get", "set"):
            _, ask_id, name, value = message
            try:
                *path, last = name.split(".")
                target = getattr(engine, "engine", engine)  # behind `as_streaming` too
                for part in path:
                    target = getattr(target, part)
                if kind == "set":
                    setattr(target, last, value)
                    value = None
                else:
                    value = getattr(target, last)
                outbox.put(("answer", ask_id, True, value))
            except Exception as exc:
                outbox.put(("answer", ask_id, False, f"{type(exc).__name__}: {exc}"))


def _send_all(outbox: queue.SimpleQueue, replies: Connection) -> None:
    while (message := outbox.get()) is not None:
        try:
            replies.send(message)
        except OSError:  # the caller is gone
            return


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    serve(int(sys.argv[1]), int(sys.argv[2]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # not waiting for threads an engine left behind: the caller is told at EOF
