"""An engine that keeps the native engine's timing but runs no model (benchmarks only).

`EmulatedEngine` batches like the native engine: every submitted page joins the running batch
(up to `concurrency`), admission costs the encoder's and the prefill's time per page, and each
decode step advances every running page by one token and lasts `step_ms(batch)`, a line fitted
to the H200 runs in RESULTS.md ("Round 3": Base, 2,672 steps at a mean batch of 154 in 20.8 s;
encoder + prefill ~19 ms a page). A page's future completes the step it reaches its
`max_new_tokens`. Its thread sleeps instead of computing, so the CPU stays free for what is
measured with it: whether the pipeline around an engine (loading, submitting, finishing)
keeps up with a GPU of that speed, on any machine. It is never a feature: the native engine
is what users run.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from core_model.engines.interface import PageRequest, PageResult

MODES = ("tiny", "small", "base", "large", "gundam")


class EmulatedEngine:
    name = "native"
    supported_modes = MODES
    lazy_images = True  # as the native engine: pixels in files are never read on the caller's thread

    def __init__(self, *, concurrency: int = 512, step_ms: tuple[float, float] = (4.5, 0.02),
                 admit_ms: float = 19.0, gil_ms: float = 0.0) -> None:
        self.concurrency = concurrency
        self.step_ms = step_ms  # (fixed, per running page)
        self.admit_ms = admit_ms
        # Of each page's admission, the part spent holding the GIL: the native engine's
        # launches block inside the driver once the device's queue is full, and PyTorch holds
        # the GIL there (H200, RESULTS.md "Round 6": Base encoder launches 1.6 s of 2.8 s for
        # 512 pages, ~3 ms a page; Gundam 7.7 of 8.1 s, ~15 ms). Held in C (a sort), so no
        # other thread of the process runs Python meanwhile.
        self.gil_ms = min(gil_ms, admit_ms)
        self._gil_chunk = _gil_chunk() if gil_ms else None
        self.stats = {"decode_steps": 0, "decode_rows": 0, "admitted": 0}
        self._inbox: list[tuple[PageRequest, Future]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="emulated-engine", daemon=True)
        self._thread.start()

    def submit(self, request: PageRequest, *, on_token=None) -> Future:
        future: Future = Future()
        with self._wake:
            self._inbox.append((request, future))
            self._wake.notify()
        return future

    def generate(self, requests, *, on_token=None) -> list[PageResult]:
        return [f.result() for f in [self.submit(r) for r in requests]]

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _hold_gil(self, seconds: float) -> float:
        """Hold the GIL for about `seconds` in C calls of ~1 ms; returns the time held."""
        if self._gil_chunk is None or seconds <= 0:
            return 0.0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sorted(self._gil_chunk)  # C code: the GIL is not released inside
        return time.perf_counter() - started

    def _serve(self) -> None:
        running: list[list] = []  # [request, future, tokens so far]
        while True:
            with self._wake:
                while not (self._inbox or running or self._closed):
                    self._wake.wait()
                if self._closed:
                    return
                room = self.concurrency - len(running)
                new, self._inbox = self._inbox[:room], self._inbox[room:]
            if new:
                held = self._hold_gil(self.gil_ms * len(new) / 1000)
                time.sleep(max(0.0, self.admit_ms * len(new) / 1000 - held))  # encoder + prefill
                self.stats["admitted"] += len(new)
                running += [[request, future, 1] for request, future in new]  # prefill's token
            if running:
                fixed, per_page = self.step_ms
                time.sleep((fixed + per_page * len(running)) / 1000)
                self.stats["decode_steps"] += 1
                self.stats["decode_rows"] += len(running)
                for page in running:
                    page[2] += 1
            still = []
            for request, future, tokens in running:
                limit = request.max_new_tokens or 8192
                if tokens < limit:
                    still.append([request, future, tokens])
                    continue
                future.set_result(PageResult(text="", token_ids=[0] * limit, finish_reason="length",
                                             num_output_tokens=limit, key=request.key))
            running = still


def _gil_chunk() -> list[float]:
    """A list that `sorted` takes about a millisecond to sort here."""
    import random

    size = 4096
    while True:
        data = [random.random() for _ in range(size)]
        started = time.perf_counter()
        sorted(data)
        if time.perf_counter() - started >= 0.001 or size > 1 << 20:
            return data
        size *= 2
