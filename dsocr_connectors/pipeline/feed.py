"""The loading side of the pipeline: a worker thread that opens documents and renders pages.

It runs ahead of the engine so rendering (and text-layer reading) overlaps the GPU, and it
is bounded twice: the queue holds at most a few batches of pages, and at most
`max_documents` documents are open at once (a slot is given back when the consumer has
emitted the document). Before it blocks on a slot it sends `STALL`, telling the consumer to
run its partial batch so that documents can finish; without that both sides would wait.

Messages, in order per document: `DocStart`, one `PageItem` per page, `DocEnd`; then `DONE`
after the last document, or `FeedError` if the worker itself broke.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dsocr_connectors.document import Page
from dsocr_connectors.pipeline.page_builder import error_page
from loaders.page import LoadedPage, LoaderError

POLL_SECONDS = 0.1


@dataclass
class Job:
    """One document to convert: a source, the name to record, pages (None: the converter's)."""

    source: Any
    name: str | None = None
    pages: list[int] | None = None


@dataclass
class DocStart:
    doc_id: int
    job: Job
    name: str


@dataclass
class PageItem:
    doc_id: int
    loaded: LoadedPage
    page: Page | None  # already final (text layer, load error); None: for the engine


@dataclass
class DocEnd:
    doc_id: int
    num_pages: int


@dataclass
class FeedError:
    error: BaseException


STALL = "stall"
DONE = "done"

OpenPages = Callable[[Job], Iterable[LoadedPage]]
Route = Callable[[LoadedPage], "Page | None"]


def source_name(job: Job) -> str:
    """How a document is named in results: the given name, else the path or stream name."""
    if job.name:
        return job.name
    if isinstance(job.source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(job.source, "name", job.source))


class Feed:
    """Runs `open_pages` and `route` over jobs in a worker thread; read messages with `get`."""

    def __init__(
        self,
        jobs: Iterable[Job],
        *,
        open_pages: OpenPages,
        route: Route,
        max_documents: int,
        max_pages: int,
    ) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_pages))
        self._slots = threading.Semaphore(max(1, max_documents))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(iter(jobs), open_pages, route), name="dsocr-feed", daemon=True
        )
        self._thread.start()

    def get(self) -> Any:
        return self._queue.get()

    def release_document(self) -> None:
        """The consumer emitted a document: its slot may be reused."""
        self._slots.release()

    def close(self) -> None:
        """Stop the worker (it exits at its next put or slot wait) and wait for it."""
        self._stop.set()
        self._slots.release()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(POLL_SECONDS)

    def _put(self, message: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _take_slot(self) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        if not self._put(STALL):
            return False
        while not self._stop.is_set():
            if self._slots.acquire(timeout=POLL_SECONDS):
                return True
        return False

    def _run(self, jobs: Iterator[Job], open_pages: OpenPages, route: Route) -> None:
        try:
            for doc_id, job in enumerate(jobs):
                if not self._take_slot():
                    return
                name = source_name(job)
                if not self._put(DocStart(doc_id, job, name)):
                    return
                num_pages = 0
                last_number = 0
                try:
                    for loaded in open_pages(job):
                        last_number = loaded.number
                        if not self._put(PageItem(doc_id, loaded, _route_safely(route, loaded))):
                            return
                        num_pages += 1
                except Exception as exc:  # the file broke mid-way: record it on a page
                    loaded = LoadedPage(source=name, number=last_number + 1)
                    stage = "load" if isinstance(exc, (LoaderError, OSError)) else "preprocess"
                    if not self._put(PageItem(doc_id, loaded, error_page(loaded, stage, exc))):
                        return
                    num_pages += 1
                if not self._put(DocEnd(doc_id, num_pages)):
                    return
            self._put(DONE)
        except BaseException as exc:  # the feed itself broke: let the consumer raise it
            self._put(FeedError(exc))


def _route_safely(route: Route, loaded: LoadedPage) -> Page | None:
    if loaded.error is not None:
        return error_page(loaded, "load", loaded.error)
    try:
        return route(loaded)
    except Exception as exc:
        return error_page(loaded, "preprocess", exc)
