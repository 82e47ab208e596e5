"""The loading side of the pipeline: a worker thread that opens documents and renders pages.

It runs ahead of the engine, so rendering (and text-layer reading) overlaps the GPU, and it
is bounded twice:
- at most `max_pages` pages are handed over and not yet final: the worker takes a permit
  before it hands a page over, and the consumer gives it back (`page_done`) once the page
  is final;
- at most `max_documents` documents are open: the worker takes a slot before it opens a
  document, and the consumer gives it back (`document_done`) once it has emitted it.
Neither wait can deadlock, and neither needs the consumer to do anything but its own work:
every page handed over becomes final without the worker (the consumer submits it and the
engine completes it), and a document's `DocEnd` is sent before the worker waits for the
next slot, so every open document can finish and be emitted.

Messages go onto the consumer's queue (which never blocks the worker), in order per
document: `DocStart`, one `PageItem` per page, `DocEnd`; then `DONE` after the last
document, or `FeedError` if the worker itself broke.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dsocr_connectors.document import Page
from dsocr_connectors.pipeline.page_builder import error_page
from loaders.page import LoadedPage, LoaderError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
CLOSE_WAIT_SECONDS = 10.0  # a worker still rendering one huge page is left to finish alone


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
    """Runs `open_pages` and `route` over jobs in a worker thread, putting messages on `out`.

    Args:
        jobs: the documents, in order (may block: a queue-fed iterator works).
        open_pages: a job -> its loaded pages.
        route: a loaded page -> a final page (text layer, dead end) or None (the model).
        out: the consumer's queue; the worker only ever puts on it.
        max_documents: documents open at once.
        max_pages: pages handed over and not yet final.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        *,
        open_pages: OpenPages,
        route: Route,
        out: queue.SimpleQueue,
        max_documents: int,
        max_pages: int,
    ) -> None:
        self._out = out
        self._slots = threading.Semaphore(max(1, max_documents))
        self._pages = threading.Semaphore(max(1, max_pages))
        self._stop = threading.Event()
        self._reading_jobs = threading.Event()  # set while waiting for the next job
        self._thread = threading.Thread(
            target=self._run, args=(iter(jobs), open_pages, route), name="dsocr-feed", daemon=True
        )
        self._thread.start()

    def page_done(self) -> None:
        """A page handed over is final: its permit may be reused."""
        self._pages.release()

    def document_done(self) -> None:
        """The consumer emitted a document: its slot may be reused."""
        self._slots.release()

    def close(self) -> None:
        """Stop the worker (it exits at its next wait or page) and wait for it a while; not
        when it waits for the next job (a queue-fed job iterator may never give one)."""
        self._stop.set()
        self._slots.release()
        self._pages.release()
        if self._reading_jobs.is_set():
            return
        self._thread.join(CLOSE_WAIT_SECONDS)
        if self._thread.is_alive():
            log.debug("the feed worker is still busy; it stops after its current page")

    def _take(self, semaphore: threading.Semaphore) -> bool:
        while not self._stop.is_set():
            if semaphore.acquire(timeout=POLL_SECONDS):
                return not self._stop.is_set()
        return False

    def _run(self, jobs: Iterator[Job], open_pages: OpenPages, route: Route) -> None:
        try:
            for doc_id, job in enumerate(_reading(jobs, self._reading_jobs)):
                if not self._take(self._slots):
                    return
                name = source_name(job)
                self._out.put(DocStart(doc_id, job, name))
                num_pages = self._send_pages(doc_id, job, name, open_pages, route)
                if num_pages is None:
                    return
                self._out.put(DocEnd(doc_id, num_pages))
            self._out.put(DONE)
        except BaseException as exc:  # the feed itself broke: let the consumer raise it
            self._out.put(FeedError(exc))

    def _send_pages(self, doc_id: int, job: Job, name: str, open_pages: OpenPages,
                    route: Route) -> int | None:
        """Hand over every page of one document; the page count, or None when stopped."""
        num_pages = 0
        last_number = 0
        pages = open_pages(job)
        try:
            for loaded in pages:
                last_number = loaded.number
                if not self._take(self._pages):
                    return None
                self._out.put(PageItem(doc_id, loaded, _route_safely(route, loaded)))
                num_pages += 1
        except Exception as exc:  # the file broke mid-way: record it on a page
            loaded = LoadedPage(source=name, number=last_number + 1)
            stage = "load" if isinstance(exc, (LoaderError, OSError)) else "preprocess"
            if not self._take(self._pages):
                return None
            self._out.put(PageItem(doc_id, loaded, error_page(loaded, stage, exc)))
            num_pages += 1
        finally:
            close = getattr(pages, "close", None)
            if callable(close):
                close()  # stops a prefetching thread, releases the file
        return num_pages


def _reading(jobs: Iterator[Job], flag: threading.Event) -> Iterator[Job]:
    """`jobs`, with `flag` set while waiting for the next one."""
    while True:
        flag.set()
        try:
            job = next(jobs)
        except StopIteration:
            return
        finally:
            flag.clear()
        yield job


def _route_safely(route: Route, loaded: LoadedPage) -> Page | None:
    if loaded.error is not None:
        return error_page(loaded, "load", loaded.error)
    try:
        return route(loaded)
    except Exception as exc:
        return error_page(loaded, "preprocess", exc)
