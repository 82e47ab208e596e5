"""One streaming run of a `Converter`: pages go to the engine the moment they are ready,
each result is finished the moment it comes back, documents are emitted once complete.

There is no batch barrier: nothing ever waits for a group of pages. The run's loop lives
on the consumer's thread (the generator `Run.__iter__`); two kinds of helpers only put
messages on its queue: the feed's worker (`feed.py`: documents opened, pages rendered and
routed) and the engine (each submitted page's future calls back when it completes). The
loop takes one message at a time:
- a page from the feed: final already (text layer, load error), or queued for the engine;
- a completed future: the page is finished (`page_finish.finish_result`: built and parsed,
  checked against its text layer), here or in a worker process; a page that looped or hit
  the token limit is queued once more in its rerun mode (`recovery.py`); a page with chart or
  chemistry figures queues their regions (`deep/region.py`) and is final when all are back;
  any other page is final. A future that raises (the engine was closed or broke) fails its
  page with the error as the reason.
Each request's `key` is `(document, page index)`: the document's index in this run and the
page's index in its document (0-based), for engines or wrappers that want to know.

After each message the loop submits queued work while fewer than `max_in_flight` requests
are at the engine (reruns and regions first: they finish pages already open), and emits
what is complete: pages in order (for `iter_pages`), documents in input order or, when not
`ordered`, each as soon as its last page is final.

Memory: the feed hands over at most `max_in_flight` pages that are not final yet (each
page's image is dropped when the page is final), and keeps at most `max_documents`
documents open. While the consumer works on an emitted document the loop is paused, but
the engine keeps working on what it holds (2x its concurrency by default) and the feed
keeps rendering, so a consumer that is quick per page never starves the engine. Finishing
a page (parse, region planning, the text-layer check, typed tables) is mostly Python: one
thread of it does ~10-25 pages a second, less than one H200 reads, so on machines of 8 cores
or more it runs in worker processes (`Converter(finish_processes=...)`) and the loop only
keeps the books.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from core_model.engines.interface import PageRequest, PageResult, takes_lazy_images
from dsocr_connectors.deep.region import RegionTask, apply_region_result
from dsocr_connectors.deep.table_merge import link_continued_tables
from dsocr_connectors.document import Document, Page
from dsocr_connectors.pipeline.feed import DONE, DocEnd, DocStart, Feed, FeedError, Job, PageItem
from dsocr_connectors.pipeline.page_finish import (
    FinishSettings,
    Outcome,
    final_touches,
    finish_result,
    page_regions,
)
from dsocr_connectors.pipeline.progress import Progress
from loaders.page import LoadedPage

if TYPE_CHECKING:
    from dsocr_connectors.pipeline.converter import Converter

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One request for the engine: a page, its rerun (`first` is the failed first run), or
    one figure region of `page` (`region` set; the page is final when all are back)."""

    doc_id: int
    slot: int
    loaded: LoadedPage
    mode: str
    first: Page | None = None
    region: RegionTask | None = None
    page: Page | None = None
    submitted_at: float = 0.0


@dataclass
class _Done:
    work: Work
    future: Future  # the engine's


@dataclass
class _Finished:
    work: Work
    future: Future  # a worker's `finish_result`


@dataclass
class _Touched:
    doc_id: int
    slot: int
    loaded: LoadedPage
    future: Future  # a worker's `final_touches`


FINISH = "dsocr_connectors.pipeline.page_finish:finish_result"
TOUCH = "dsocr_connectors.pipeline.page_finish:final_touches"


@dataclass
class _OpenDoc:
    job: Job
    name: str
    pages: dict[int, Page] = field(default_factory=dict)
    num_pages: int | None = None  # known at DocEnd
    num_arrived: int = 0
    num_emitted: int = 0  # pages yielded in order (iter_pages)
    is_total_known: bool = False  # pages were selected, so the progress total is known

    @property
    def is_complete(self) -> bool:
        return self.num_pages is not None and len(self.pages) == self.num_pages


class Run:
    """Iterate to convert `jobs`: yields `(job, Page)` for each page in order (ordered runs
    only) and `(job, Document)` for each document.

    Args:
        converter: the settings, the engine, routing and page loading.
        jobs: the documents (any iterable; it is read on the feed's thread).
        ordered: documents in input order; False: in the order they complete.
    """

    def __init__(self, converter: Converter, jobs: Iterable[Job], *, ordered: bool = True) -> None:
        self.converter = converter
        self.jobs = jobs
        self.ordered = ordered
        self.engine = converter.streaming_engine
        self.lazy_images = takes_lazy_images(self.engine)
        self.max_in_flight = converter.max_in_flight
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.docs: dict[int, _OpenDoc] = {}
        self.ready: deque[Work] = deque()  # waiting for room at the engine
        self.in_flight = 0  # requests at the engine
        self.futures: set[Future] = set()
        self.regions_left: dict[tuple[int, int], list[Any]] = {}  # -> [page, regions left]
        self.touched: set[int] = set()  # documents changed by the last message
        self.next_doc = 0
        self.feed_done = False
        self.finisher = converter._finisher()  # worker processes, or None: finish here
        self.settings = FinishSettings(
            engine_name=converter.engine_name or "", prompt=converter.prompt,
            reparse=converter.reparse, rerun_mode=converter.rerun_mode,
            supported_modes=_modes(getattr(self.engine, "supported_modes", None)))

    def __iter__(self) -> Iterator[tuple[Job, Page | Document]]:
        c = self.converter
        self.progress = Progress(c.progress)
        self.feed = Feed(self.jobs, open_pages=c._open_pages, route=c._route, out=self.events,
                         max_documents=c.max_documents, max_pages=self.max_in_flight)
        try:
            while not (self.feed_done and not self.docs):
                self._handle(self.events.get())
                self._submit_ready()
                yield from self._emit()
        finally:
            for future in self.futures:
                future.cancel()  # pages not started yet are not read for nothing
            self.feed.close()
            self.progress.close()

    # -- messages ---------------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        if isinstance(message, _Done):
            self._complete(message.work, message.future)
        elif isinstance(message, _Finished):
            self._apply(message.work, message.future.result())
        elif isinstance(message, _Touched):
            self._record(message.doc_id, message.slot, message.future.result(), message.loaded)
        elif isinstance(message, PageItem):
            doc = self.docs[message.doc_id]
            slot, doc.num_arrived = doc.num_arrived, doc.num_arrived + 1
            if slot == 0 and not doc.is_total_known and message.loaded.total_pages:
                self.progress.add_total(message.loaded.total_pages)
            if message.page is not None:
                self._finalize(message.doc_id, slot, message.page, message.loaded)
            else:
                self.ready.append(Work(message.doc_id, slot, message.loaded, self.converter.mode))
        elif isinstance(message, DocStart):
            selected = message.job.pages if message.job.pages is not None else self.converter.pages
            self.docs[message.doc_id] = _OpenDoc(message.job, message.name,
                                                 is_total_known=bool(selected))
            self.progress.add_total(len(selected or []))
        elif isinstance(message, DocEnd):
            self.docs[message.doc_id].num_pages = message.num_pages
            self.touched.add(message.doc_id)
        elif message is DONE:
            self.feed_done = True
        elif isinstance(message, FeedError):
            raise message.error

    def _complete(self, work: Work, future: Future) -> None:
        """One engine result is back: finish the page (here or in a worker), or splice a
        region's result into its page."""
        self.in_flight -= 1
        self.futures.discard(future)
        result = _result_of(future)
        if work.region is not None:
            self._finish_region(work, result)
            return
        args = (work.mode, work.first, time.perf_counter() - work.submitted_at, self.settings)
        if self.finisher is None:
            self._apply(work, finish_result(result, work.loaded, *args))
        else:  # no pixels pickled: a worker reads them from their file, if any, for crops
            done = self.finisher.call(FINISH, result, work.loaded.without_pixels(), *args)
            done.add_done_callback(lambda f, w=work: self.events.put(_Finished(w, f)))

    def _apply(self, work: Work, outcome: Outcome) -> None:
        """A finished page: queue its rerun or its regions, or record it (final)."""
        page = outcome.page
        if outcome.needs_pixels:  # finished elsewhere without its pixels: regions cut here
            outcome.regions = page_regions(page, work.loaded, self.settings)
            if not outcome.regions:
                self._finalize(work.doc_id, work.slot, page, work.loaded)
                return
        if outcome.rerun_mode is not None:
            log.info("%s page %d: %s; rerun in %s", self.docs[work.doc_id].name,
                     work.loaded.number, page.reason, outcome.rerun_mode)
            self.ready.appendleft(Work(work.doc_id, work.slot, work.loaded, outcome.rerun_mode,
                                       first=page))
        elif outcome.regions:
            self.regions_left[(work.doc_id, work.slot)] = [page, len(outcome.regions)]
            self.ready.extendleft(reversed([
                Work(work.doc_id, work.slot, work.loaded, task.request.mode, region=task, page=page)
                for task in outcome.regions]))
        else:
            self._record(work.doc_id, work.slot, page, work.loaded)

    def _finish_region(self, work: Work, result: PageResult) -> None:
        assert work.region is not None and work.page is not None
        apply_region_result(work.page, work.region, result, engine=self.converter.engine_name)
        waiting = self.regions_left[(work.doc_id, work.slot)]
        waiting[1] -= 1
        if waiting[1] == 0:
            del self.regions_left[(work.doc_id, work.slot)]
            self._finalize(work.doc_id, work.slot, work.page, work.loaded)

    def _finalize(self, doc_id: int, slot: int, page: Page, loaded: LoadedPage) -> None:
        """The page is final but for its last touches: give them (here or in a worker)."""
        if self.finisher is None:
            self._record(doc_id, slot, final_touches(page, loaded), loaded)
        else:
            done = self.finisher.call(TOUCH, page, loaded.without_pixels())
            done.add_done_callback(lambda f: self.events.put(_Touched(doc_id, slot, loaded, f)))

    def _record(self, doc_id: int, slot: int, page: Page, loaded: LoadedPage) -> None:
        """The page is final: record it, free its image (and its pixel file) and its permit."""
        self.docs[doc_id].pages[slot] = page
        loaded.drop_pixels()
        self.feed.page_done()
        self.progress.update(page.status.value)
        self.touched.add(doc_id)

    # -- the engine -------------------------------------------------------------------------

    def _submit_ready(self) -> None:
        while self.ready and self.in_flight < self.max_in_flight:
            self._submit(self.ready.popleft())

    def _submit(self, work: Work) -> None:
        c = self.converter
        if work.region is not None:
            image, prompt = work.region.request.image, work.region.request.prompt
        else:  # pixels in a file are read on the engine's preparing thread, if it takes them
            image = work.loaded.image_source if self.lazy_images else work.loaded.load_image()
            prompt = c.prompt
        request = PageRequest(image=image, prompt=prompt, mode=work.mode,
                              max_new_tokens=c.max_new_tokens, key=(work.doc_id, work.slot))
        work.submitted_at = time.perf_counter()
        self.in_flight += 1
        try:
            future = self.engine.submit(request)
        except Exception as exc:  # a closed or broken engine: the page fails with the reason
            future = Future()
            future.set_exception(exc)
        self.futures.add(future)
        future.add_done_callback(partial(self._on_done, work))  # runs on the engine's thread

    def _on_done(self, work: Work, future: Future) -> None:
        self.events.put(_Done(work, future))

    # -- emission ---------------------------------------------------------------------------

    def _emit(self) -> Iterator[tuple[Job, Page | Document]]:
        if self.ordered:
            while self.next_doc in self.docs:
                doc = self.docs[self.next_doc]
                while doc.num_emitted in doc.pages:
                    yield doc.job, doc.pages[doc.num_emitted]
                    doc.num_emitted += 1
                if not doc.is_complete:
                    break
                yield self._document(self.next_doc)
                self.next_doc += 1
        else:
            for doc_id in sorted(self.touched):
                if doc_id in self.docs and self.docs[doc_id].is_complete:
                    yield self._document(doc_id)
        self.touched.clear()

    def _document(self, doc_id: int) -> tuple[Job, Document]:
        doc = self.docs.pop(doc_id)
        pages = [doc.pages[i] for i in range(doc.num_pages or 0)]
        self.feed.document_done()
        document = Document(source=doc.name, pages=pages, metadata=self.converter._metadata())
        link_continued_tables(document)  # tables continued across page breaks
        return doc.job, document


def _result_of(future: Future) -> PageResult:
    """The future's result; a future that raised or was cancelled gives an error result."""
    try:
        return future.result()
    except CancelledError:
        return PageResult(text="", finish_reason="error", error="the request was cancelled")
    except Exception as exc:
        return PageResult(text="", finish_reason="error", error=f"{type(exc).__name__}: {exc}")


def _modes(modes: Any) -> tuple[str, ...] | None:
    return None if modes is None else tuple(modes)
