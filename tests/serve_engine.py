"""A streaming test engine for the server tests: `--engine tests.serve_engine:echo`.

It implements `submit` (the streaming interface) with a thread pool of `concurrency`
workers and streams its answer word by word through `on_token`. The answer names the image
size, the mode and the prompt, so a client can tell its own answer from another's; the
image's top-left pixel picks a behaviour: red -> the page fails (finish "error"), blue ->
the page takes `slow_seconds`, or, with a `hold` file, waits while that file exists (the
test decides when it ends); anything else answers after `delay` seconds, then one word
every `token_delay` seconds.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from core_model.engines.interface import (
    EngineClosed,
    PageRequest,
    PageResult,
    error_result,
    generate_all,
)

RED, BLUE = (255, 0, 0), (0, 0, 255)


def answer(request: PageRequest) -> str:
    """What the engine says for a page: a grounded text block naming the request."""
    width, height = request.image.size
    prompt = request.prompt.replace("\n", " ")
    return (f"<|ref|>text<|/ref|><|det|>[[100, 100, 900, 200]]<|/det|>\n"
            f"page {width}x{height} in {request.mode} for {prompt}")


class EchoEngine:
    name = "echo"

    def __init__(self, *, concurrency: int = 8, delay: float = 0.0, slow_seconds: float = 2.0,
                 token_delay: float = 0.02, hold: Path | None = None):
        self.concurrency = concurrency
        self.hold = hold
        self.delay = delay
        self.token_delay = token_delay
        self.slow_seconds = slow_seconds
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="echo")
        self._closed = False

    def submit(self, request: PageRequest, *, on_token=None) -> Future[PageResult]:
        if self._closed:
            raise EngineClosed("echo engine is closed")
        future: Future[PageResult] = Future()
        self._pool.submit(self._read, request, on_token, future)
        return future

    def generate(self, requests, *, on_token=None):
        return generate_all(self, requests, on_token=on_token)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _read(self, request: PageRequest, on_token, future: Future[PageResult]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        pixel = request.image.convert("RGB").getpixel((0, 0))
        if pixel == RED:
            future.set_result(error_result(request, "scripted failure (red page)"))
            return
        if pixel == BLUE and self.hold is not None:
            deadline = time.monotonic() + 30
            while self.hold.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(self.slow_seconds if pixel == BLUE else self.delay)
        words = answer(request).split(" ")
        limit = request.max_new_tokens or 8192
        kept = words[:limit]
        ids = [1000 + i for i in range(len(kept))]
        for i, word in enumerate(kept):
            if on_token is not None:
                time.sleep(self.token_delay)
                on_token(ids[i], word if i == 0 else " " + word)
        future.set_result(PageResult(
            text=" ".join(kept), token_ids=ids,
            finish_reason="length" if len(kept) < len(words) else "eos",
            num_vision_tokens=100, num_prompt_tokens=120, num_output_tokens=len(kept),
            key=request.key,
        ))


def echo(max_batch_size: int | None = None, **options) -> EchoEngine:
    """`--engine tests.serve_engine:echo`: `--batch-size` workers, answers at once."""
    return EchoEngine(concurrency=max_batch_size or 8)


def held_echo(model: str, max_batch_size: int | None = None, **options) -> EchoEngine:
    """Blue pages wait while the file `--model` names exists (queue and timeout tests)."""
    return EchoEngine(concurrency=max_batch_size or 2, hold=Path(model))
