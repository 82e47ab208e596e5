"""An engine in a process of its own: the same `Engine` interface, the model in a child.

The native engine's thread launches every GPU kernel and does the step loop's bookkeeping
in Python. In the process that also loads, streams and finishes pages, it shares one GIL
with all of that: measured on the H200 (RESULTS.md, round 7), its pages were admitted later
and its prefill took twice as long as the same engine's alone, and `Converter` got 73-77%
of the engine's rate in Base. `EngineProcess` loads the engine in a child process instead
(`python -m core_model.engines.engine_server`, plain pipes with `multiprocessing.connection`
framing; not `multiprocessing`, whose children import the caller's `__main__` again). What
crosses the pipe is small: a page request names its pixels (a `loaders.PixelFile`: a file in
/dev/shm, read by the engine's own preparing threads) and a result is its text and token
ids. A PIL image given instead goes through the pipe.

Failures:
- the engine cannot be loaded: the constructor raises `EngineStartError` with the child's
  message (or its exit code);
- the child dies (killed, out of memory, a crash in native code): every page it held fails
  with `EngineClosed` saying so, as does every later `submit`; nothing hangs;
- the caller's process ends or drops the engine without `close()`: the child sees its pipe
  close and exits; a dropped engine's child is also stopped when it is garbage-collected.

The child ignores SIGINT: Ctrl-C stops the caller, which then closes the engine.
POSIX only (pipes passed by descriptor); `available()` says so.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from PIL import Image

from core_model.engines.interface import (
    EngineClosed,
    PageRequest,
    PageResult,
    PageTokenCallback,
    TokenCallback,
    generate_all,
)
from core_model.page_image import load_page_image
from core_model.worker_process import start_child

log = logging.getLogger(__name__)

SERVER_MODULE = "core_model.engines.engine_server"
CLOSE_WAIT_S = 60.0  # for the child to finish closing its engine before it is killed


class EngineStartError(RuntimeError):
    """The engine process could not load its engine; the message says why."""


def available() -> bool:
    return os.name == "posix"


class EngineProcess:
    """`engine` (a registered name, e.g. "native", or a "module:attr" factory) made with
    `options` in a child process, behind the `Engine` interface.

    The constructor returns once the engine is loaded. `name`, `concurrency`, `lazy_images`
    and `supported_modes` are the child engine's; `stats` reads its counters (and setting it
    replaces them); `get`/`set` read and change any attribute of it (a picklable value;
    dotted names: "config.min_admit"). `pid` is the child's process id.
    """

    lazy_images = True  # a picklable lazy image goes as itself; the child loads it if need be

    def __init__(self, engine: str, **options: Any) -> None:
        if not available():
            raise EngineStartError("an engine process needs POSIX pipes")
        self.spec = engine
        self._link = _Link.start()
        self._finalizer = weakref.finalize(self, self._link.stop, None)
        info = self._link.load(engine, options)
        self.name: str = info["name"]
        self.concurrency: int = info["concurrency"]
        self.supported_modes: tuple[str, ...] | None = info["supported_modes"]
        self.engine_lazy_images: bool = info["lazy_images"]
        self.pid = self._link.process.pid
        threading.Thread(target=self._link.read, name="dsocr-engine-replies", daemon=True).start()

    def submit(
        self, request: PageRequest, *, on_token: PageTokenCallback | None = None
    ) -> Future[PageResult]:
        return self._link.submit(request, on_token)

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        return generate_all(self, requests, on_token=on_token)

    def get(self, name: str) -> Any:
        return self._link.ask("get", name)

    def set(self, name: str, value: Any) -> None:
        self._link.ask("set", name, value)

    @property
    def stats(self) -> dict[str, Any]:
        return self.get("stats")

    @stats.setter
    def stats(self, value: dict[str, Any]) -> None:
        self.set("stats", value)

    def close(self) -> None:
        """Close the child's engine and end the child; pages not done fail with
        `EngineClosed`."""
        self._finalizer.detach()
        self._link.stop(CLOSE_WAIT_S)

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Link:
    """The child process, its two pipes and the futures of the pages it holds. The thread
    reading replies holds this, not the `EngineProcess`, so a dropped engine can be
    collected (and its child stopped)."""

    def __init__(self, process: subprocess.Popen, requests: Connection, replies: Connection):
        self.process, self.requests, self.replies = process, requests, replies
        self.lock = threading.Lock()  # the ids, the waiting futures, `broken`
        self.send_lock = threading.Lock()  # the request pipe
        self.next_id = 0
        self.pages: dict[int, tuple[Future[PageResult], PageTokenCallback | None]] = {}
        self.answers: dict[int, Future[Any]] = {}
        self.broken: str | None = None  # why no page can be read any more

    @classmethod
    def start(cls) -> _Link:
        child = start_child(SERVER_MODULE)
        return cls(child.process, child.requests, child.replies)

    def load(self, engine: str, options: dict[str, Any]) -> dict[str, Any]:
        try:
            self.requests.send(("load", engine, options))
            status, payload = self.replies.recv()
        except (EOFError, OSError):
            self.stop(5.0)
            raise EngineStartError(f"the engine process for {engine!r} exited while loading "
                                   f"({self._exit()})") from None
        if status != "ready":
            self.stop(5.0)
            raise EngineStartError(f"engine {engine!r}: {payload}")
        return payload

    # -- requests (the caller's threads) ----------------------------------------------------

    def submit(self, request: PageRequest, on_token: PageTokenCallback | None) -> Future[PageResult]:
        future: Future[PageResult] = Future()
        with self.lock:
            if self.broken is not None:
                raise EngineClosed(self.broken)
            page_id = self.next_id
            self.next_id += 1
            self.pages[page_id] = (future, on_token)
        data = _pack(("submit", page_id, request, on_token is not None))
        try:
            with self.send_lock:
                self.requests.send_bytes(data)
        except OSError:
            self._settle(page_id, exception=EngineClosed(self._why()))
        future.add_done_callback(lambda f: self._cancelled(page_id, f))
        return future

    def ask(self, what: str, name: str, value: Any = None) -> Any:
        answer: Future[Any] = Future()
        with self.lock:
            if self.broken is not None:
                raise EngineClosed(self.broken)
            ask_id = self.next_id
            self.next_id += 1
            self.answers[ask_id] = answer
        with self.send_lock:
            self.requests.send((what, ask_id, name, value))
        return answer.result(timeout=60)

    def _cancelled(self, page_id: int, future: Future) -> None:
        if not future.cancelled():
            return
        with self.lock:
            self.pages.pop(page_id, None)
        try:
            with self.send_lock:
                self.requests.send(("cancel", page_id))
        except OSError:  # closed: nothing to cancel
            pass

    # -- replies (the reading thread) -------------------------------------------------------

    def read(self) -> None:
        while True:
            try:
                message = self.replies.recv()
            except (EOFError, OSError):
                break
            kind, item_id = message[0], message[1]
            if kind == "done":
                self._settle(item_id, result=message[2])
            elif kind == "raised":
                error_type, text = message[2], message[3]
                error = EngineClosed(text) if error_type == "EngineClosed" else RuntimeError(text)
                self._settle(item_id, exception=error)
            elif kind == "token":
                entry = self.pages.get(item_id)
                if entry is not None and entry[1] is not None:
                    entry[1](message[2], message[3])
            elif kind == "answer":
                with self.lock:
                    answer = self.answers.pop(item_id, None)
                if answer is not None:
                    ok, value = message[2], message[3]
                    answer.set_result(value) if ok else answer.set_exception(RuntimeError(value))
        self._fail_all(f"the engine process exited ({self._exit()})")

    def _settle(self, page_id: int, *, result: Any = None,
                exception: BaseException | None = None) -> None:
        with self.lock:
            entry = self.pages.pop(page_id, None)
        if entry is not None:  # else cancelled meanwhile
            _complete(entry[0], result=result, exception=exception)

    def _fail_all(self, why: str) -> None:
        with self.lock:
            if self.broken is None:
                self.broken = why
            pages, self.pages = self.pages, {}
            answers, self.answers = self.answers, {}
        for future, _ in pages.values():
            _complete(future, exception=EngineClosed(self.broken))
        for answer in answers.values():
            answer.set_exception(EngineClosed(self.broken))

    def _why(self) -> str:
        return self.broken or f"the engine process exited ({self._exit()})"

    def _exit(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "still running, its pipe closed"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    # -- the end ------------------------------------------------------------------------------

    def stop(self, wait_s: float | None) -> None:
        """Ask the child to close its engine and end; wait up to `wait_s`, then kill it
        (None: do not wait; the child ends by itself)."""
        with self.lock:
            if self.broken is None:
                self.broken = "the engine process was closed"
        with self.send_lock:
            try:
                self.requests.send(("close",))
            except OSError:
                pass
            self.requests.close()
        if wait_s is None:
            return
        try:
            self.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            log.warning("the engine process %d did not end in %.0f s: killed",
                        self.process.pid, wait_s)
            self.process.kill()
            self.process.wait()


def _pack(message: tuple) -> bytes:
    """The submit message pickled. A lazy image that does not pickle (a lambda, a closure) is
    read here and goes as the image."""
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        request = message[2]
        if isinstance(request.image, Image.Image) or not callable(request.image):
            raise
        fixed = replace(request, image=load_page_image(request.image))
        return pickle.dumps((*message[:2], fixed, *message[3:]), protocol=pickle.HIGHEST_PROTOCOL)


def _complete(future: Future, *, result: Any = None,
              exception: BaseException | None = None) -> None:
    """Settle `future` unless its caller cancelled it meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
