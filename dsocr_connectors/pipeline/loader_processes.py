"""PDF pages rendered (and pages finished) in worker processes, so that the CPU side keeps
up with a fast GPU.

In one process PDF loading cannot go faster than one page at a time: every pymupdf call
holds `loaders.pdf.MUPDF_LOCK`, and rendering plus the text layer and its ruled tables
(about 75 ms an A4 page on a 2-core Xeon, most of it Python) holds the GIL, which the
engine's own thread needs between decode steps. `LoaderProcesses` renders a PDF's pages in
a few worker processes instead, a few pages per request, and hands them back in order.

The workers are plain subprocesses (`python -m dsocr_connectors.pipeline.loader_worker
READ_FD WRITE_FD`) talking over two pipes with `multiprocessing.connection` framing; not
`multiprocessing` pools, whose children import the caller's `__main__` again (a script
without an `if __name__ == "__main__":` guard would start converting in every worker).
A worker that dies or fails is replaced, and the pages of its request are rendered in the
calling thread instead, so a page is never lost to a worker. A process takes ~1 s to start
(interpreter and imports): `start()` starts them all at once in the background (the
`Converter` does so when it is made, beside its engine's loading), and until they are up the
calling thread renders itself each request no process has taken yet, so the first pages never
wait for them. POSIX only (pipes passed by descriptor); elsewhere `available()` is False and
loading stays in a thread.

Page pixels do not go through the pipe, nor are they read here: a worker writes each rendered
page's raw pixels to a file in a private temporary folder (in /dev/shm where it has room:
memory, not disk) and sends its name (`LoadedPage.pixel_file`). Whoever needs the pixels
reads them: the engine's preparing threads, a finishing process cutting figure crops; the
file is deleted when its page is final (`LoadedPage.drop_pixels`) or the pool closes. Through
the pipe, an A4 page's 6 MB arrived in ~100 reads of 64 KB, each releasing and taking back
the GIL, then a pickle copy; read back here, the fresh image's page faults and copy still
held the GIL ~9 ms a page on the H200 host: either way the receiving thread competed with
the engine thread, which launches GPU work, and capped the pages received. Where a file
cannot be written (a full /dev/shm), that page's pixels go through the pipe. A folder left
by a killed process (its id is in the name) is removed by the next pool that starts.

`call("module:function", *args)` runs any importable function of this package in a worker
the same way (the stream finishes pages with it: `page_finish.py`); where the worker fails,
the calling thread runs it.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import loaders
from core_model.worker_process import Child, scratch_dir, start_child
from loaders.page import LoadedPage, LoaderError

log = logging.getLogger(__name__)

WORKER_MODULE = "dsocr_connectors.pipeline.loader_worker"
PAGES_PER_REQUEST = 4
REQUESTS_AHEAD_PER_WORKER = 2  # rendered pages waiting, at most: workers x 2 x 4
IMAGE_DIR_PREFIX = "dsocr-pages-"  # + the owning process id: the pixel files' folder


def available() -> bool:
    return os.name == "posix"


def default_workers() -> int:
    """One process per 4 cores, up to 4 (0 below 8 cores: the work stays in a thread).

    On the H200's 16-core host, with page views made on the GPU, 4 loading processes did as
    well as 6 in Base (88% of the engine alone each) and better in Gundam (94% against 92%),
    and 8 were no better (RESULTS.md, round 10): a PDF page takes ~7 ms of a core to render
    into a pixel file, so 4 render faster than the engine reads.
    """
    if not available():
        return 0
    return min(4, (os.cpu_count() or 1) // 4) if (os.cpu_count() or 1) >= 8 else 0


class LoaderProcesses:
    """A pool of `num_workers` loading processes, started by `start()` or on first use.

    Args:
        num_workers: processes (>= 1).
    """

    def __init__(self, num_workers: int) -> None:
        self.num_workers = num_workers
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._threads = ThreadPoolExecutor(num_workers, thread_name_prefix="dsocr-loader")
        self._lock = threading.Lock()
        self._started = 0  # processes asked for (started or starting)
        self._workers: list[_Worker] = []  # processes up
        self._all_up = threading.Event()
        self._closed = False
        self._image_dir: str | None = None  # made on first use, removed by close()

    def start(self) -> None:
        """Start every process now, in the background; returns at once."""
        with self._lock:
            missing = self.num_workers - self._started
            self._started = self.num_workers
        for _ in range(missing):
            self._threads.submit(self._start_one)

    def wait_started(self, timeout: float | None = 60.0) -> bool:
        """Wait until every process is up (True), or `timeout` seconds (False: one did not
        start in time, or failed to start; the next request tries again)."""
        self.start()
        return self._all_up.wait(timeout)

    def _start_one(self) -> None:
        try:
            worker = self._spawn()
        except Exception as exc:  # the next request tries again
            if not self._closed:
                log.warning("a loading process did not start (%s)", exc)
            worker = None
        self._idle.put(worker)

    def iter_pages(self, source: Path, *, dpi: float, pages: list[int] | None,
                   password: str | None, name: str | None, extract_tables: bool = True,
                   text_layer: bool | str = True) -> Iterator[LoadedPage]:
        """The PDF's selected pages in order, like `loaders.iter_pages`, rendered ahead by
        the workers. A file that cannot be opened yields its error page from this thread."""
        options = {"dpi": dpi, "password": password, "name": name,
                   "extract_tables": extract_tables, "text_layer": text_layer}
        try:
            total = loaders.count_pages(source, password=password, name=name)
        except LoaderError:
            yield from loaders.iter_pages(source, pages=pages, **options)  # its error page
            return
        numbers = loaders.select_pages(pages, total) or [1]
        chunks = iter([numbers[i:i + PAGES_PER_REQUEST]
                       for i in range(0, len(numbers), PAGES_PER_REQUEST)])
        self.start()
        # Each request has a claim: the process that takes it first renders it, or this
        # thread does, while the processes are not all up, if none has taken it yet.
        ahead: deque[tuple[list[int], threading.Lock, Future]] = deque()
        try:
            while True:
                while len(ahead) < self.num_workers * REQUESTS_AHEAD_PER_WORKER:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    request = {"source": str(source), "pages": chunk,
                               "image_dir": self._images(), **options}
                    claim = threading.Lock()
                    ahead.append((chunk, claim, self._threads.submit(self._render, request, claim)))
                if not ahead:
                    return
                chunk, claim, future = ahead.popleft()
                rendered = None
                if not self._all_up.is_set() and claim.acquire(blocking=False):
                    future.cancel()  # rendered here, below
                else:
                    try:
                        rendered = future.result()
                    except Exception as exc:  # the worker broke: these pages from this thread
                        log.warning("%s: a loading process failed (%s); pages %s load here",
                                    name or source, exc, chunk)
                yield from (loaders.iter_pages(source, pages=chunk, **options)
                            if rendered is None else rendered)
        finally:
            for _, _, future in ahead:
                future.cancel()

    def call(self, function: str, *args: Any) -> Future:
        """`function(*args)` ("package.module:name") in a worker; its result as a future."""
        return self._threads.submit(self._call, function, args)

    def _call(self, function: str, args: tuple) -> Any:
        worker = self._take_worker()
        try:
            reply = worker.ask({"call": function, "args": args})
        except BaseException as exc:
            worker.stop()
            self._idle.put(None)  # a new one next time
            log.warning("a worker process failed (%s); %s runs in this process", exc, function)
            return resolve(function)(*args)
        self._idle.put(worker)
        return reply

    def close(self) -> None:
        """Stop the workers (each exits when its pipe closes); remove the pixel files left."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
            image_dir, self._image_dir = self._image_dir, None
        for worker in workers:
            worker.stop()
        if image_dir is not None:
            shutil.rmtree(image_dir, ignore_errors=True)

    def _images(self) -> str | None:
        """The folder the workers write pixels to (None: they send them through the pipe)."""
        with self._lock:
            if self._image_dir is None:
                self._image_dir = scratch_dir(IMAGE_DIR_PREFIX)
                if self._image_dir is None:
                    return None
                # Pixel files live until their pages are final: a pool dropped without
                # close() (or at exit) still removes them.
                weakref.finalize(self, shutil.rmtree, self._image_dir, True)
            return self._image_dir

    def _render(self, request: dict[str, Any], claim: threading.Lock) -> list[LoadedPage] | None:
        """The request's pages from a process; None if the calling thread claimed them
        first."""
        worker = self._take_worker()
        if not claim.acquire(blocking=False):
            self._idle.put(worker)
            return None
        try:
            pages = worker.ask(request)
        except BaseException:
            worker.stop()
            self._idle.put(None)  # a new one next time
            raise
        self._idle.put(worker)
        return pages

    def _take_worker(self) -> _Worker:
        with self._lock:
            if self._started < self.num_workers:
                self._started += 1
                self._idle.put(None)
        worker = self._idle.get()
        return self._spawn() if worker is None else worker

    def _spawn(self) -> _Worker:
        """A new process, once it answers (None in the idle queue stands for one to start)."""
        worker = _Worker()
        try:
            worker.ask({"call": f"{WORKER_MODULE}:ping", "args": ()})  # imports done
        except BaseException:
            worker.stop()
            raise
        with self._lock:
            if not self._closed:
                self._workers.append(worker)
                if len(self._workers) >= self.num_workers:
                    self._all_up.set()
                return worker
        worker.stop()  # the pool closed while it started
        raise RuntimeError("the loading processes are closed")


class _Worker(Child):
    """One loading process and its two pipes."""

    def __init__(self) -> None:
        child = start_child(WORKER_MODULE)
        super().__init__(child.process, child.requests, child.replies)

    def ask(self, request: dict[str, Any]) -> Any:
        self.requests.send(request)
        status, payload = self.replies.recv()  # EOFError if the process died
        if status == "error":
            raise RuntimeError(payload)
        return payload if "call" in request else [_restore(page) for page in payload]


def _restore(page: LoadedPage) -> LoadedPage:
    """Rebuild the `LoaderError` the worker sent as its parts (`loader_worker.portable`)."""
    if isinstance(page.error, tuple):
        _, source, reason, number = page.error
        page.error = LoaderError(source, reason, number)
    return page


def resolve(function: str) -> Any:
    """"package.module:name" -> the function (only this project's packages)."""
    import importlib

    module, _, name = function.partition(":")
    if module.split(".")[0] not in ("dsocr_connectors", "loaders"):
        raise ValueError(f"not a function of this package: {function}")
    return getattr(importlib.import_module(module), name)
